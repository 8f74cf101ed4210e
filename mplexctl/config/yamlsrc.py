"""Safe YAML loading that remembers where every value came from (line of each node)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class Located:
    """Plain data (dicts, lists, scalars) plus the line of each node, keyed by path."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)  # line of a mapping key
    numeric_keys: list[Path] = field(default_factory=list)  # keys YAML read as numbers
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


class _Constructor(yaml.constructor.SafeConstructor):
    pass


_ctor = _Constructor()


def _walk(node: yaml.Node, path: Path, out: Located) -> Any:
    out.lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlSyntaxError(key_node.start_mark.line + 1, "a mapping key must be a scalar")
            raw_key = _ctor.construct_object(key_node)
            key = str(raw_key) if not isinstance(raw_key, str) else raw_key
            if key_node.tag != "tag:yaml.org,2002:str":
                out.numeric_keys.append((*path, key))
            child = (*path, key)
            if key in result:
                out.duplicate_keys.append(child)
            out.key_lines[child] = key_node.start_mark.line + 1
            result[key] = _walk(value_node, child, out)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*path, i), out) for i, item in enumerate(node.value)]
    return _ctor.construct_object(node)


def load_located(text: str) -> Located:
    """Compose YAML (safe schema only) and return data with positions."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise YamlSyntaxError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, f"invalid YAML: {exc}") from None
    out = Located(data=None)
    if node is None:
        out.lines[()] = 1
        return out
    try:
        out.data = _walk(node, (), out)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise YamlSyntaxError(mark.line + 1 if mark else 1, f"invalid YAML: {exc.problem}") from None
    return out
