"""Stage 1 and 2 of the pipeline: load a YAML file safely and validate it into a Config."""

from __future__ import annotations

import gc
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from mplexctl.accel import expectblocks, routeblocks
from mplexctl.accel import verdicts as remembered
from mplexctl.config.expect import expectation_problems, make_expectations
from mplexctl.config.model import Config, Interface, Limits, Service, TagSpec, Window
from mplexctl.config.schema import Verdicts, schema, schema_problems
from mplexctl.config.semantic import Tables, decode_routes, semantic_problems
from mplexctl.config.yamlsrc import Located, Path, YamlSyntaxError, load_located
from mplexctl.errors import ConfigError, Problem

__all__ = ["Config", "format_path", "load_config", "parse_config"]

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(path: Path) -> str:
    """services[0].routes."600" style; route keys are always quoted (JSON string escapes)."""
    out = ""
    for i, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        quoted = _is_route(path[: i + 1]) or not _BARE.match(part)
        out += ("." if out else "") + (json.dumps(part) if quoted else part)
    return out or "(top)"


def _is_route(path: Path) -> bool:
    return len(path) == 4 and path[0] == "services" and path[2] == "routes"


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


STDIN = "-"  # load_config("-") reads standard input, named <stdin> in messages
TCP_WARNING = (
    "a tcp service is routed segment by segment: segments without payload (handshakes, ACKs, "
    "FINs) fall outside its windows and are dropped, so ordinary TCP connections to port "
    "{port} fail; use tcp for per-segment consumers such as raw-socket collectors (README: "
    "TCP segments)"
)


def load_config(
    filename: str,
    verdicts: Verdicts | None = None,
    *,
    expectations: bool = True,
    name: str = "",
) -> Config:
    """Read and validate a file ("-": stdin); messages call it `name` when given."""
    name = name or ("<stdin>" if filename == STDIN else filename)
    try:
        if filename == STDIN:
            raw = sys.stdin.buffer.read()
        else:
            with open(filename, "rb") as fh:
                raw = fh.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError([Problem(name, None, None, f"cannot read: {reason}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        msg = f"not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        raise ConfigError([Problem(name, line, None, msg)]) from None
    if "\r" in text:  # universal newlines, as reading in text mode does
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return parse_config(text, name, verdicts, expectations=expectations)


def parse_config(
    text: str,
    filename: str = "<config>",
    verdicts: Verdicts | None = None,
    *,
    expectations: bool = True,
) -> Config:
    """Validate YAML text; raise ConfigError listing every problem as FILE:LINE: PATH: msg.
    Then, with `expectations`, check every `expect:` item against the model: the failed ones
    are reported together as FILE:LINE: expect[i] (name): got X, expected Y. `verdicts`:
    where schema verdicts are remembered (default: accel/verdicts.py's store)."""
    with _collector_paused():
        return _parse(text, filename, verdicts, expectations)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading makes tens of thousands of small acyclic objects (lines by path, tags, an
    expectation's frame); the cyclic collector would walk them all a few times for nothing
    (a good part of validating many expectations). Reference counting still frees them."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _parse(text: str, filename: str, verdicts: Verdicts | None, expectations: bool) -> Config:
    try:
        located = locate_text(text)
    except YamlSyntaxError as exc:
        raise ConfigError([Problem(filename, exc.line, "(top)", _one_line(exc.message))]) from None
    tables: Tables = {}
    problems = _problems(located, tables, verdicts or remembered.store())
    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        raise ConfigError(
            [Problem(filename, line, path, _one_line(msg)) for line, path, msg in problems]
        )
    config = replace(_build(located, filename, tables), warnings=_warnings(located, filename))
    if expectations and config.expectations:
        from mplexctl.contract.expect import model_failures

        failed = model_failures(config)
        if failed:
            raise ConfigError(failed)
    return config


def locate_text(text: str) -> Located:
    """The data of a YAML text with the line of every node: the reference path is
    yamlsrc.load_located; the accelerators for `expect:` and `routes:` blocks give the same
    result faster, or None (not applicable)."""
    fast = expectblocks.load_located(text, _routes_located)
    return fast if fast is not None else _routes_located(text)


def _routes_located(text: str) -> Located:
    fast = routeblocks.load_located(text)
    return fast if fast is not None else load_located(text)


def _warnings(located: Located, filename: str) -> tuple[Problem, ...]:
    out = []
    for i, svc in enumerate(located.data["services"]):
        if svc["protocol"] == "tcp":
            path = ("services", i, "protocol")
            msg = TCP_WARNING.format(port=svc["port"])
            out.append(Problem(filename, located.line_of(path), format_path(path), msg))
    return tuple(out)


def _problems(
    located: Located, tables: Tables, verdicts: Verdicts | None
) -> list[tuple[int, str, str]]:
    out: list[tuple[int, str, str]] = []

    def add(path: Path, message: str, key: bool = False) -> None:
        out.append((located.line_of(path, key=key), format_path(path), message))

    if not isinstance(located.data, dict):
        add((), "the file must hold a mapping with version, interfaces and services")
        return out
    schema_found = schema_problems(located.data, verdicts)
    for path, message, at_key in schema_found:
        add(path, message, at_key)
    flagged = {path for path, _, at_key in schema_found if at_key}
    for path in located.numeric_keys:
        if _is_route(path):
            add(
                path,
                f'tag {path[-1]} must be quoted ("{path[-1]}"): YAML reads unquoted '
                "numbers as integers (0600 would become 384)",
                key=True,
            )
        elif path not in flagged:  # an unknown key already says it all
            add(path, f"key {path[-1]!r} must be a string", key=True)
    for path in located.duplicate_keys:
        add(path, f"key {path[-1]!r} appears twice in the same mapping", key=True)
    for path, message, at_key in semantic_problems(located.data, _limits(located.data), tables):
        add(path, message, at_key)
    for path, message, at_key in expectation_problems(located.data):
        add(path, message, at_key)
    return out


def _limits(data: dict[str, Any]) -> Limits:
    raw = data.get("limits")
    if not isinstance(raw, dict):
        return Limits()
    bounds = schema()["properties"]["limits"]["properties"]
    ok = {
        k: v
        for k, v in raw.items()
        if k in bounds
        and isinstance(v, int)
        and not isinstance(v, bool)
        and bounds[k]["minimum"] <= v <= bounds[k]["maximum"]
    }
    return Limits(**ok)


def _build(located: Located, filename: str, tables: Tables) -> Config:
    data: dict[str, Any] = located.data
    interfaces = tuple(
        Interface(name=i["name"], xdp_mode=i.get("xdp_mode", "auto"), hook=i.get("hook", "xdp"))
        for i in data["interfaces"]
    )
    services = []
    for i, s in enumerate(data["services"]):
        tag = TagSpec(offset=s["tag"]["offset"], length=s["tag"]["length"])
        table = tables.get(i) or decode_routes(s.get("routes", {}), tag.length)
        assert table is not None  # validated above
        services.append(
            Service(
                name=s["name"],
                protocol=s["protocol"],
                port=s["port"],
                windows=tuple(sorted(Window(w["min"], w["max"]) for w in s["payload_length"])),
                tag=tag,
                table=MappingProxyType(table),
                unmatched=s.get("unmatched", "drop"),
                reply=s.get("reply", "none"),
            )
        )
    return Config(
        interfaces=interfaces,
        services=tuple(services),
        limits=_limits(data),
        source=filename,
        expectations=make_expectations(data, located.line_of),
    )
