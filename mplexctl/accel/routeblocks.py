"""Accelerator for loading: big route mappings read by a regex, not as YAML nodes.

A big route table is many near-identical lines `"TAG": PORT`. Composing them into YAML nodes is
far slower than reading them with a regex (BENCHMARKS.md has the figures). The lane accepts a
`routes:` block only when every line of it has one narrow form whose YAML meaning is plain (a
double- or single-quoted printable-ASCII key without escapes, or a plain `hex:` key; a decimal
port without sign, leading zero or underscore), and no key repeats. It then blanks the block
(line numbers stay put), gives the `routes:` key a sentinel value, composes the rest with
libyaml as usual and puts the block's mapping where the sentinel landed. If anything differs --
another form, a tab, a repeated key, a sentinel that is not exactly the block-style value of
that `routes:` key on that line -- load_located answers None and the whole text takes the
ordinary path (config/yamlsrc.py): the lane can change the speed of loading, never its result
(tests/accel/test_routeblocks.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from mplexctl import accel
from mplexctl.config.yamlsrc import MAX_DEPTH, Located, Path, YamlSyntaxError, compose, locate

SENTINEL = "mplexctl-route-block-"
_ODD_BREAKS = ("\r", "\x85", "\u2028", "\u2029")  # YAML line breaks other than "\n"
# What YAML's reader refuses (as PyYAML's Reader.NON_PRINTABLE): the lane drops comments, so
# a comment it would drop holding such a character sends the block the ordinary way (anything
# the lane keeps is read by libyaml, which refuses it there).
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_HEADER = re.compile(r"^( *)((?:- +)?)routes:(?:[ ]+#[^\n]*|[ ]*)\n", re.M)
# YAML refuses a key that runs over 1024 characters; a tag is at most 20 (hex: + 16 digits).
KEY_MAX = 256
_FIRST = re.compile(r"^( *)[^ \n#]", re.M)  # the first line holding something
_SKIP = re.compile(r"^ *(?:#[^\n]*)?$", re.M)  # blank and comment-only lines


@cache
def _entry(indent: int) -> re.Pattern[str]:
    """A route line at exactly `indent` spaces: key (with its quotes) and port."""
    return re.compile(
        rf"^ {{{indent}}}(\"[ !#-\[\]-~]{{0,{KEY_MAX}}}\"|'[ -&(-~]{{0,{KEY_MAX}}}'"
        rf"|hex:[0-9A-Fa-f]{{1,{KEY_MAX}}})"
        r":[ ]+([1-9][0-9]{0,4})(?:[ ]+#[^\n]*|[ ]*)$",
        re.M,
    )


@cache
def _quoted(indent: int, part: int) -> re.Pattern[str]:
    """The usual route line, `"TAG": PORT` (a subset of _entry), capturing the key without
    its quotes (part 0) or the port (part 1): two one-group scans of the same lines build the
    mapping faster than one scan yielding pairs."""
    chars, port = rf"[ !#-\[\]-~]{{0,{KEY_MAX}}}", "[1-9][0-9]{0,4}"
    if part == 0:
        return re.compile(rf'^ {{{indent}}}"({chars})":[ ]+{port}[ ]*$', re.M)
    return re.compile(rf'^ {{{indent}}}"{chars}":[ ]+({port})[ ]*$', re.M)


@cache
def _block_end(col: int) -> re.Pattern[str]:
    """The first line that leaves a block nested under a key at column col."""
    return re.compile(rf"^ {{0,{col}}}(?=[^ \t\n#])", re.M)


@dataclass
class Block:
    """One route mapping read by the lane."""

    name: str  # the sentinel value standing in for it
    header_line: int  # line of the `routes:` key (1-based); the block's text starts below
    body: str  # the block's text, for line numbers in messages
    routes: dict[str, int]
    _lines: dict[str, int] | None = field(default=None, repr=False)

    @property
    def entry_line(self) -> int:
        """The line YAML gives the mapping itself: that of its first entry."""
        first = _FIRST.search(self.body)
        return self.header_line + 1 + (self.body.count("\n", 0, first.start()) if first else 0)

    def line_of(self, key: str) -> int:
        if self._lines is None:
            lines: dict[str, int] = {}
            line, pos = self.header_line + 1, 0
            for m in _entry(_indent(self.body) or 0).finditer(self.body):
                line += self.body.count("\n", pos, m.start())
                pos = m.start()
                lines[_unquote(m.group(1))] = line
            self._lines = lines
        return self._lines.get(key, self.header_line + 1)


@dataclass
class Lane:
    skeleton: str  # the text with every accepted block blanked out
    blocks: dict[str, Block]  # by sentinel


def _indent(text: str) -> int | None:
    """Indentation of the first line holding something (None: only blanks and comments)."""
    first = _FIRST.search(text)
    return None if first is None else len(first.group(1))


def _unquote(key: str) -> str:
    """A key as _entry captures it, without its quotes."""
    return key[1:-1] if key[0] in "\"'" else key


def _read_block(body: str, col: int) -> dict[str, int] | None:
    """The block's mapping, or None unless every line is an entry (all at one indentation,
    deeper than col), blank or a comment, and no key repeats."""
    text = body[:-1] if body.endswith("\n") else body
    indent = _indent(text)
    if "\t" in text or indent is None or indent <= col:
        return None
    lines = text.count("\n") + 1
    keys = _quoted(indent, 0).findall(text)
    if len(keys) == lines:  # every line "TAG": PORT: read without a Python-level loop
        ports = _quoted(indent, 1).findall(text)  # the same lines, so the same order
        routes = dict(zip(keys, map(int, ports), strict=True))
        return routes if len(routes) == lines else None
    if _NON_PRINTABLE.search(text):
        return None  # the lane would drop a comment holding a character YAML refuses
    entries = _entry(indent).findall(text)
    if len(entries) != lines and len(entries) + len(_SKIP.findall(text)) != lines:
        return None
    routes = {_unquote(k): int(p) for k, p in entries}
    return routes if len(routes) == len(entries) else None


def split(text: str) -> Lane | None:
    """The skeleton and the blocks the lane reads, or None when it reads none."""
    if SENTINEL in text or any(b in text for b in _ODD_BREAKS):
        return None
    pieces: list[str] = []
    blocks: dict[str, Block] = {}
    pos = 0
    line = 1
    search_from = 0
    while (m := _HEADER.search(text, search_from)) is not None:
        search_from = m.end()
        if _NON_PRINTABLE.search(m.group(0)):
            continue  # its comment holds a character YAML refuses: the ordinary path says so
        indent, dash = m.group(1), m.group(2)
        col = len(indent) + len(dash)
        start = m.end()
        end_match = _block_end(col).search(text, start)
        end = end_match.start() if end_match else len(text)
        body = text[start:end]
        routes = _read_block(body, col)
        if routes is None:
            continue
        header_line = line + text.count("\n", pos, m.start())
        name = f"{SENTINEL}{len(blocks)}"
        blocks[name] = Block(name, header_line, body, routes)
        pieces.append(text[pos : m.start()])
        pieces.append(f'{indent}{dash}routes: "{name}"\n')
        pieces.append("\n" * body.count("\n"))
        line = header_line + 1 + body.count("\n")
        pos = search_from = end
    if not blocks:
        return None
    pieces.append(text[pos:])
    return Lane("".join(pieces), blocks)


def load_located(text: str) -> Located | None:
    """What yamlsrc.load_located(text) returns, read faster; None: not applicable (no block
    the lane reads, or anything it cannot vouch for, errors included)."""
    if not accel.enabled():
        return None
    lane = split(text)
    if lane is None:
        return None
    try:
        node = compose(lane.skeleton)
        out = locate(node)
    except YamlSyntaxError:
        return None  # the ordinary path says what is wrong, with the original text
    return out if _fill(out, node, lane) else None


def _sentinel_nodes(root: yaml.Node | None) -> dict[str, list[tuple[int, bool]]]:
    """Every scalar node holding a sentinel: its line, and whether it is a double-quoted
    string that is the value (not the key) of a block-style mapping."""
    found: dict[str, list[tuple[int, bool]]] = {}
    seen: set[int] = set()
    todo: list[tuple[yaml.Node, bool]] = [(root, False)] if root is not None else []
    while todo:
        node, as_value = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                todo += [(key, False), (value, node.flow_style is False)]
        elif isinstance(node, yaml.SequenceNode):
            todo += [(item, False) for item in node.value]
        elif isinstance(node, yaml.ScalarNode) and node.value.startswith(SENTINEL):
            plain = as_value and node.style == '"' and node.tag == "tag:yaml.org,2002:str"
            found.setdefault(node.value, []).append((int(node.start_mark.line) + 1, plain))
    return found


def _sentinel_paths(data: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    """(path, sentinel) of every sentinel in the data, as a key or as a value."""
    if isinstance(data, dict):
        for key, value in data.items():
            if key.startswith(SENTINEL):
                yield (*path, key), key
            yield from _sentinel_paths(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _sentinel_paths(value, (*path, i))
    elif isinstance(data, str) and data.startswith(SENTINEL):
        yield path, data


def _fill(out: Located, node: yaml.Node | None, lane: Lane) -> bool:
    """Put each block's mapping where its sentinel is, if every sentinel is exactly the value
    of its own `routes:` key (block style, on the block's header line) and nothing else."""
    if out.duplicate_keys:
        return False  # a repeated key may have replaced a sentinel (or one of its parents)
    nodes = _sentinel_nodes(node)
    paths: dict[str, list[Path]] = {}
    for path, name in _sentinel_paths(out.data):
        paths.setdefault(name, []).append(path)
    if nodes.keys() != lane.blocks.keys() or paths.keys() != lane.blocks.keys():
        return False
    places = []
    for name, block in lane.blocks.items():
        if nodes[name] != [(block.header_line, True)] or len(paths[name]) != 1:
            return False
        (path,) = paths[name]
        if path[-1] != "routes" or out.lines.get(path) != block.header_line:
            return False
        if len(path) + 1 > MAX_DEPTH:
            return False  # the block's entries would be nested too deeply: walk() says so
        places.append((path, block))
    for path, block in places:
        parent = out.data
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = block.routes
        out.lines[path] = block.entry_line
        out.deferred[path] = block
    return True
