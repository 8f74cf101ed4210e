"""The JSON Schema (draft 2020-12) shipped inside the package, and schema-level problems."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

from mplexctl.config.yamlsrc import Path

SCHEMA_FILE = "config-v1.json"


def schema_text() -> str:
    return resources.files("mplexctl.config").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@cache
def schema() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(schema_text())
    return result


def _strict_integer(_checker: Any, instance: Any) -> bool:
    # JSON Schema calls 5000.0 an integer; an operator writing a port means a whole number.
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _validator() -> Any:
    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)
    cls = jsonschema.validators.extend(Draft202012Validator, type_checker=checker)
    return cls(schema())


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
    return repr(value)


def _message(err: Any) -> tuple[Path, str, bool]:
    """(path, message, points-at-key) for one jsonschema error, in an operator's words."""
    path: Path = tuple(err.absolute_path)
    kind = err.validator
    if kind == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        if "additionalProperties" in err.schema and err.schema["additionalProperties"] is False:
            allowed = ", ".join(sorted(err.schema.get("properties", {})))
            return (*path, extra[0]), f"unknown key {extra[0]!r} (allowed: {allowed})", True
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
    if kind == "pattern":
        return path, f"{err.instance!r} is not a valid name (pattern {err.validator_value})", False
    return path, err.message, False


def _article(kind: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string",
             "integer": "a whole number", "boolean": "true or false"}
    return names.get(str(kind), str(kind))


def schema_problems(data: Any) -> list[tuple[Path, str, bool]]:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    return [_message(e) for e in errors]
