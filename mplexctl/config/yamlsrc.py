"""Safe YAML loading that remembers where every value came from (line of each node)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
# A config is a few levels deep; anything deeper is garbage (and would exhaust the stack).
MAX_DEPTH = 32
# Nodes reached again through aliases (*name): sharing a few lists is fine, a "billion laughs"
# document is not.
MAX_ALIAS_NODES = 1_000_000


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

    def line_of(self, path: Path, *, key: bool = False) -> int:
        """Line of the node at path, or of its nearest ancestor that has one."""
        table = self.key_lines if key else self.lines
        p = tuple(path)
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
        self.alias_budget = MAX_ALIAS_NODES

    def walk(self, node: yaml.Node, path: Path) -> Any:
        if node in self.active:
            raise YamlSyntaxError(_line(node), "invalid YAML: an alias refers to its own anchor")
        if node in self.seen:
            self.alias_budget -= 1
            if self.alias_budget < 0:
                raise YamlSyntaxError(
                    _line(node),
                    f"invalid YAML: aliases expand to more than {MAX_ALIAS_NODES} nodes",
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


def _reader_error(text: str, exc: yaml.reader.ReaderError) -> YamlSyntaxError:
    pos = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, pos) + 1
    char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
    return YamlSyntaxError(line, f"invalid YAML: unacceptable character {char}: {exc.reason}")


def load_located(text: str) -> Located:
    """Compose YAML (safe schema only) and return data with positions."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(text, exc) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlSyntaxError(1, "invalid YAML: nested too deeply") from None
    out = Located(data=None)
    if node is None:
        out.lines[()] = 1
        return out
    out.data = _Walker(out).walk(node, ())
    return out
