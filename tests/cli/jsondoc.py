"""Checks a --json document against docs/json-output.schema.json (README: --json output)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "json-output.schema.json"


@cache
def schema() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SCHEMA.read_text())
    return doc


def check(stdout: str, definition: str, exit_code: int) -> dict[str, Any]:
    """The document, after checking it is `$defs/<definition>` and carries `exit_code`."""
    doc: dict[str, Any] = json.loads(stdout)
    ref = {"$ref": f"#/$defs/{definition}", "$defs": schema()["$defs"]}
    jsonschema.Draft202012Validator(ref).validate(doc)
    assert doc["exit_code"] == exit_code
    return doc
