"""Remembered schema verdicts: only valid inputs are remembered, and only the same input
skips jsonschema; the store is a cache that can fail without changing any result."""

from __future__ import annotations

import importlib
import os
import pathlib
from typing import Any

import pytest

from mplexctl.accel.verdicts import KEEP, SchemaVerdicts
from mplexctl.config.schema import schema_problems
from tests.samples import service_doc

# The module (mplexctl.config re-exports a function of the same name).
schema = importlib.import_module("mplexctl.config.schema")


pytestmark = pytest.mark.unit


def test_valid_input_is_remembered_and_then_not_checked_again(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SchemaVerdicts(str(tmp_path / "v"))
    assert schema_problems(service_doc(), store) == []
    assert len(os.listdir(tmp_path / "v")) == 1
    calls: list[Any] = []
    real = schema._schema_problems
    monkeypatch.setattr(schema, "_schema_problems", lambda d: calls.append(d) or real(d))
    assert schema_problems(service_doc(), store) == []
    # Another route table is covered by the bulk check: the same slim input, still known.
    assert schema_problems(service_doc(routes={"601": 5002, "602": 5003}), store) == []
    assert calls == []
    # A change jsonschema must see is checked, and its problem found.
    problems = schema_problems(service_doc(port="5000"), store)
    assert [m for _, m, _ in problems] == ["must be a number, not the string '5000'"]
    assert len(calls) == 1
    # ... and never remembered: the next time it is checked (and found) again.
    assert schema_problems(service_doc(port="5000"), store) == problems
    assert len(calls) == 2 and len(os.listdir(tmp_path / "v")) == 1
    # A bad route value is not emptied by the bulk check, so jsonschema reports it.
    bad = schema_problems(service_doc(routes={"600": True}), store)
    assert [m for _, m, _ in bad] == ["must be a whole number, not a boolean"]


def test_types_yaml_tells_apart_are_different_inputs(tmp_path: pathlib.Path) -> None:
    store = SchemaVerdicts(str(tmp_path))
    assert schema_problems(service_doc(port=5000), store) == []
    assert schema_problems(service_doc(port=5000.0), store) != []
    assert schema_problems(service_doc(port=True), store) != []


def test_store_keeps_a_bounded_number(tmp_path: pathlib.Path) -> None:
    store = SchemaVerdicts(str(tmp_path))
    for i in range(KEEP + 10):
        store.remember_valid(f"{i:064x}")
    assert len(os.listdir(tmp_path)) == KEEP
    assert store.known_valid(f"{KEEP + 9:064x}")


def test_an_unwritable_store_changes_nothing(tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SchemaVerdicts(str(blocker / "v"))
    assert schema_problems(service_doc(), store) == []
    assert not store.known_valid("0" * 64)
