"""routes_valid() (the bulk check that lets jsonschema skip big route tables) says exactly
what the schema says of a routes mapping."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mplexctl.config.schema import _validator, routes_valid, schema_problems
from tests.samples import service_doc

pytestmark = pytest.mark.unit

VALUES: list[Any] = [
    *(1, 2, 5001, 65534, 65535, 0, -1, 65536, 10**20),
    *(True, False, None, 1.0, 5001.0, "5001", "", [], {}, [5001], b"x"),
]


def _schema_finds_nothing(routes: dict[str, Any]) -> bool:
    return not any(
        list(e.absolute_path)[:3] == ["services", 0, "routes"]
        for e in _validator().iter_errors(service_doc(routes=routes))
    )


def test_bulk_check_agrees_with_jsonschema() -> None:
    rng = random.Random(3)
    cases = [{}, {"600": 5001}] + [
        {
            f"k{i}": rng.choice(VALUES) if rng.random() < 0.3 else rng.randint(1, 65535)
            for i in range(rng.randint(1, 6))
        }
        for _ in range(600)
    ]
    verdicts = [routes_valid(c) for c in cases]
    assert any(verdicts) and not all(verdicts)
    for case, verdict in zip(cases, verdicts, strict=True):
        assert verdict == _schema_finds_nothing(case), case


def test_problems_in_a_big_table_still_come_from_the_schema() -> None:
    routes: dict[str, Any] = {f"{i:03d}": 1000 + i for i in range(900)}
    routes["050"] = True
    routes["051"] = 70000
    found = {(p, m) for p, m, _ in schema_problems(service_doc(routes=routes))}
    assert found == {
        (("services", 0, "routes", "050"), "must be a whole number, not a boolean"),
        (("services", 0, "routes", "051"), "70000 is out of range: must be at most 65535"),
    }
