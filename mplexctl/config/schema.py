"""The JSON Schema (draft 2020-12) shipped inside the package, and schema-level problems."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from mplexctl.config.yamlsrc import Path

if TYPE_CHECKING:
    from jsonschema import ValidationError

SCHEMA_FILE = "config-v1.json"


def schema_text() -> str:
    # The JSON file ships inside this package (package-data): read it next to this module.
    with open(os.path.join(os.path.dirname(__file__), SCHEMA_FILE), encoding="utf-8") as fh:
        return fh.read()


@cache
def schema() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(schema_text())
    return result


def _strict_integer(_checker: Any, instance: Any) -> bool:
    # JSON Schema calls 5000.0 an integer; an operator writing a port means a whole number.
    return isinstance(instance, int) and not isinstance(instance, bool)


def _same(a: Any, b: Any) -> bool:
    # JSON Schema's const/enum call 1.0 and true equal to 1; a config means what it writes.
    return type(a) is type(b) and bool(a == b)


def _strict_const(_v: Any, const: Any, instance: Any, _s: Any) -> Iterator[ValidationError]:
    from jsonschema import ValidationError

    if not _same(instance, const):
        yield ValidationError(f"{const!r} was expected")


def _strict_enum(_v: Any, enums: Any, instance: Any, _s: Any) -> Iterator[ValidationError]:
    from jsonschema import ValidationError

    if not any(_same(instance, e) for e in enums):
        yield ValidationError(f"{instance!r} is not one of {enums!r}")


def _whole_pattern(_v: Any, pattern: str, instance: Any, _s: Any) -> Iterator[ValidationError]:
    # Python's re.search lets "$" match before a final newline ("telemetry\n" would pass).
    from jsonschema import ValidationError

    if not isinstance(instance, str):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and match.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _validator(definition: str = "") -> Any:
    """The validator of the whole schema, or of one of its $defs (e.g. "packet")."""
    # Imported here: a no-op apply never validates, and jsonschema is slow to import.
    import jsonschema
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)
    extend: Any = jsonschema.validators.extend  # untyped in the stubs
    cls = extend(
        Draft202012Validator,
        validators={"const": _strict_const, "enum": _strict_enum, "pattern": _whole_pattern},
        type_checker=checker,
    )
    defs = schema().get("$defs", {})
    return cls(_inline_refs(defs[definition] if definition else schema(), defs))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with local "#/$defs/NAME" references replaced by their targets: the same
    rules, but jsonschema no longer resolves a reference for each route port."""
    if isinstance(node, list):
        return [_inline_refs(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        # Siblings of a $ref are annotations here ("description"): kept beside the target.
        target = _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return {k: _inline_refs(v, defs) for k, v in node.items()}


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, datetime.date):
        return f"the date {value.isoformat()}"
    if isinstance(value, bytes):
        return "binary data"
    return repr(value)


def _messages(err: Any) -> list[tuple[Path, str, bool]]:
    """(path, message, points-at-key) for one jsonschema error, in an operator's words."""
    path: Path = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and err.schema.get("additionalProperties") is False:
        known = err.schema.get("properties", {})
        allowed = ", ".join(sorted(known))
        return [
            ((*path, key), f"unknown key {key!r} (allowed: {allowed})", True)
            for key in err.instance
            if key not in known
        ]
    return [_message(err, path)]


def _message(err: Any, path: Path) -> tuple[Path, str, bool]:
    kind = err.validator
    if kind == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return path, f"missing required key {missing!r}", False
    if kind == "type":
        want = err.validator_value
        if want == "integer" and isinstance(err.instance, str) and err.instance.isdigit():
            return path, f"must be a number, not the string {err.instance!r}", False
        return path, f"must be {_article(want)}, not {_describe(err.instance)}", False
    if kind == "enum":
        choices = " | ".join(str(c) for c in err.validator_value)
        return path, f"{_describe(err.instance)} is not one of: {choices}", False
    if kind == "const":
        return path, f"must be {err.validator_value!r}, not {_describe(err.instance)}", False
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        return path, f"{err.instance} is out of range: must be {bound} {err.validator_value}", False
    if kind == "minItems":
        return path, f"must hold at least {err.validator_value} item(s)", False
    if kind == "maxItems":
        return path, f"must hold at most {err.validator_value} item(s)", False
    if kind == "pattern":
        return path, f"{err.instance!r} is not a valid name (pattern {err.validator_value})", False
    return path, err.message, False


def _article(kind: Any) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "a whole number",
        "boolean": "true or false",
    }
    return names.get(str(kind), str(kind))


def routes_valid(routes: dict[str, Any]) -> bool:
    """What the schema asks of a routes mapping (every value a port), checked in bulk.
    Implies that jsonschema finds nothing in it (tests/config/test_schema_routes.py)."""
    port = schema()["$defs"]["port"]
    values = routes.values()
    return set(map(type, values)) <= {int} and (
        not routes or (port["minimum"] <= min(values) and max(values) <= port["maximum"])
    )


def _checked_routes_emptied(data: Any) -> Any:
    """data with every routes mapping that routes_valid() accepts replaced by {}: jsonschema
    would check route by route what routes_valid checks in bulk. The
    same for an `expect:` list that expect_valid() accepts."""
    from mplexctl.config.expect import expect_valid

    if isinstance(data, dict) and data.get("expect") and expect_valid(data["expect"]):
        data = {**data, "expect": []}
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, list):
        return data
    slim = []
    for svc in services:
        routes = svc.get("routes") if isinstance(svc, dict) else None
        if isinstance(routes, dict) and routes and routes_valid(routes):
            svc = {**svc, "routes": {}}
        slim.append(svc)
    return {**data, "services": slim}


class Verdicts(Protocol):
    """Where schema_problems may remember inputs found valid (accel/verdicts.py)."""

    def known_valid(self, digest: str) -> bool: ...

    def remember_valid(self, digest: str) -> None: ...


def _digest(data: Any) -> str:
    """Names one input to one validator: the schema, this module (the validator's rules) and
    the data (repr tells apart every type safe YAML yields: 1, True, "1", 1.0, dates...)."""
    from mplexctl import __version__

    with open(__file__, "rb") as fh:
        rules = fh.read()
    h = hashlib.sha256(rules)
    text = "\0".join((__version__, schema_text(), repr(data)))
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def schema_problems(data: Any, verdicts: Verdicts | None = None) -> list[tuple[Path, str, bool]]:
    """Every schema problem of data; with `verdicts`, an input found valid before is not
    checked again (nor jsonschema imported)."""
    slim = _checked_routes_emptied(data)
    digest = _digest(slim) if verdicts is not None else ""
    if verdicts is not None and verdicts.known_valid(digest):
        return []
    problems = _schema_problems(slim)
    if verdicts is not None and not problems:
        verdicts.remember_valid(digest)
    return problems


def definition_problems(definition: str, data: Any) -> list[tuple[Path, str, bool]]:
    """Schema problems of data against one of the schema's $defs (paths relative to data)."""
    return _schema_problems(data, definition)


def _schema_problems(slim: Any, definition: str = "") -> list[tuple[Path, str, bool]]:
    errors = _validator(definition).iter_errors(slim)
    found = [
        m
        for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
        for m in _messages(e)
    ]
    return _typos_merged(found)


_MISSING = re.compile(r"missing required key '([^']*)'$")
_UNKNOWN = re.compile(r"unknown key '([^']*)' \(allowed: ([^)]*)\)$")


def _typos_merged(found: list[tuple[Path, str, bool]]) -> list[tuple[Path, str, bool]]:
    """An unknown key that is a typo of an allowed one says so ("did you mean ...?"); when
    the key it misspells is a missing required one, that is one problem, not two."""
    import difflib

    missing = {(path, m.group(1)) for path, msg, _ in found if (m := _MISSING.match(msg))}
    merged: set[tuple[Path, str]] = set()
    out: list[tuple[Path, str, bool]] = []
    for path, msg, at_key in found:
        m = _UNKNOWN.match(msg)
        if m and at_key and path:
            allowed = m.group(2).split(", ")
            close = difflib.get_close_matches(m.group(1), allowed, n=1, cutoff=0.75)
            if close:
                msg = f"unknown key {m.group(1)!r}: did you mean {close[0]!r}?"
                merged.add((path[:-1], close[0]))
        out.append((path, msg, at_key))
    return [
        (path, msg, at_key)
        for path, msg, at_key in out
        if not ((m := _MISSING.match(msg)) and (path, m.group(1)) in merged & missing)
    ]
