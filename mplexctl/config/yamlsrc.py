"""Safe YAML loading that remembers where every value came from (line of each node)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

Path = tuple[str | int, ...]

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
# libyaml composes a big file much faster than pure Python (same nodes and marks).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# A config is a few levels deep; anything deeper is garbage (and would exhaust the stack).
MAX_DEPTH = 32
# Nodes reached again through aliases (*name): sharing lists is fine, a "billion laughs"
# document is not. The allowance grows with the size of the document itself.
ALIAS_NODES_BASE = 100_000
ALIAS_NODES_PER_NODE = 10


class KeyLines(Protocol):
    """Lines of a mapping's keys, worked out only when a message needs one."""

    def line_of(self, key: str) -> int: ...


@dataclass
class Located:
    """Plain data (dicts, lists, scalars) plus the line of each node, keyed by path."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)  # line of a mapping key
    # Keys YAML did not read as strings (600, 0600, yes, null): the data holds them as the text
    # written in the file, so that a message can quote exactly what the author wrote.
    numeric_keys: list[Path] = field(default_factory=list)
    duplicate_keys: list[Path] = field(default_factory=list)
    # Mappings whose entries' lines are not in `lines` but worked out on demand, by path
    # (each entry on one line: key and value share it).
    deferred: dict[Path, KeyLines] = field(default_factory=dict)

    def line_of(self, path: Path, *, key: bool = False) -> int:
        """Line of the node at path, or of its nearest ancestor that has one."""
        table = self.key_lines if key else self.lines
        p = tuple(path)
        mapping = self.deferred.get(p[:-1]) if p else None
        if mapping is not None and isinstance(p[-1], str):
            return mapping.line_of(p[-1])
        while p:
            if p in table:
                return table[p]
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)


class YamlSyntaxError(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(message)


def _tag(node: yaml.Node) -> str:
    return str(node.tag).replace("tag:yaml.org,2002:", "!!")


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Walker:
    """Turns a composed node tree into plain data, recording lines; one per document."""

    def __init__(self, out: Located) -> None:
        self.out = out
        self.ctor = yaml.constructor.SafeConstructor()
        self.seen: set[yaml.Node] = set()
        self.active: set[yaml.Node] = set()
        self.revisits = 0

    def walk(self, node: yaml.Node, path: Path) -> Any:
        if node in self.active:
            raise YamlSyntaxError(_line(node), "invalid YAML: an alias refers to its own anchor")
        if node in self.seen:
            self.revisits += 1
            allowed = ALIAS_NODES_BASE + ALIAS_NODES_PER_NODE * len(self.seen)
            if self.revisits > allowed:
                raise YamlSyntaxError(
                    _line(node),
                    f"invalid YAML: aliases (*name) expand to more than {allowed} nodes",
                )
        self.seen.add(node)
        if len(path) > MAX_DEPTH:
            raise YamlSyntaxError(
                _line(node), f"invalid YAML: nested deeper than {MAX_DEPTH} levels"
            )
        self.out.lines[path] = _line(node)
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            want = _MAP if isinstance(node, yaml.MappingNode) else _SEQ
            if node.tag != want:
                raise YamlSyntaxError(
                    _line(node), f"invalid YAML: tag {_tag(node)} is not supported here"
                )
            self.active.add(node)
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self.active.discard(node)
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(
                    _line(key_node), "invalid YAML: a mapping key must be a scalar"
                )
            if key_node.tag == _MERGE:
                raise YamlSyntaxError(
                    _line(key_node), "invalid YAML: merge keys (<<) are not supported"
                )
            if key_node.tag == _STR:
                key = str(self._scalar(key_node))
            else:
                key = str(key_node.value)
                self.out.numeric_keys.append((*path, key))
            child = (*path, key)
            if key in result:
                self.out.duplicate_keys.append(child)
            self.out.key_lines[child] = _line(key_node)
            result[key] = self.walk(value_node, child)
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self.ctor.construct_object(node)
        except Exception as exc:  # a safe scalar constructor fails in many ways (!!int abc)
            problem = getattr(exc, "problem", None) or f"cannot read {node.value!r} as {_tag(node)}"
            raise YamlSyntaxError(_line(node), f"invalid YAML: {problem}") from None


_BREAKS = "\n\r\x85\u2028\u2029"  # what YAML counts as line breaks (and "\r\n")
_BREAK = re.compile(f"\r\n|[{_BREAKS}]")


def line_count(text: str) -> int:
    """Lines of text as YAML numbers them (a final line break does not start another)."""
    open_last = not text or text[-1] not in _BREAKS
    return max(1, len(_BREAK.findall(text)) + open_last)


def _reader_error(text: str, exc: yaml.reader.ReaderError) -> YamlSyntaxError:
    pos = exc.position if isinstance(exc.position, int) else 0
    if not (0 <= pos < len(text) and ord(text[pos]) == exc.character):
        # libyaml counts bytes of the UTF-8 encoding, PyYAML counts characters.
        pos = len(text.encode("utf-8", "surrogatepass")[:pos].decode("utf-8", "ignore"))
    line = len(_BREAK.findall(text, 0, pos)) + 1
    char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
    return YamlSyntaxError(line, f"invalid YAML: unacceptable character {char}: {exc.reason}")


def load_located(text: str) -> Located:
    """Compose YAML (safe schema only) and return data with positions."""
    return locate(compose(text))


def _tab_indented(text: str, index: int) -> bool:
    """Line `index` (0-based) starts with whitespace that holds a tab."""
    lines = _BREAK.split(text)
    if not 0 <= index < len(lines):
        return False
    src = lines[index]
    return "\t" in src[: len(src) - len(src.lstrip(" \t"))]


def compose(text: str) -> yaml.Node | None:
    """The node tree of a one-document YAML text (None: empty); YamlSyntaxError otherwise."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # The end of the stream is on the line after a final newline: name the last line.
        line = min(mark.line + 1, line_count(text)) if mark else 1
        what = ", ".join(str(part) for part in (exc.context, exc.problem) if part) or str(exc)
        if mark and _tab_indented(text, mark.line):
            what = "tabs are not allowed for indentation (use spaces)"
        raise YamlSyntaxError(line, f"invalid YAML: {what}") from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlSyntaxError(1, "invalid YAML: nested too deeply") from None
    return node


def locate(node: yaml.Node | None) -> Located:
    """Plain data with the line of every node, from a composed node tree."""
    out = Located(data=None)
    if node is None:
        out.lines[()] = 1
        return out
    out.data = _Walker(out).walk(node, ())
    return out
