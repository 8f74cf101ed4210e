"""Comparing loaded YAML: every path of plain data, and what a Located says about each."""

from __future__ import annotations

from typing import Any

from mplexctl.config.yamlsrc import Located, Path


def paths(data: Any, path: Path = ()) -> list[Path]:
    """The path of every node of plain data (dicts, lists, scalars), parents first."""
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, (*path, i))
    return out


def positions(out: Located) -> tuple[Any, ...]:
    """Everything a Located tells a reader: data, types, the line of every node and key,
    odd and repeated keys (two loads of one text must agree on all of it)."""
    every = paths(out.data)
    return (
        out.data,
        [type(x) for x in every],
        [(p, out.line_of(p), out.line_of(p, key=True)) for p in every],
        out.numeric_keys,
        out.duplicate_keys,
    )
