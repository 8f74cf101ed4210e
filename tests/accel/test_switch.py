"""One switch: every accelerator is on unless MPLEXCTL_ACCEL=0, and then each answers "not
applicable" (the reference path runs). tests/engine/test_accel_taken.py checks the same
against the kernel, and the `accel` fixture runs the equivalence-critical tests both ways."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mplexctl import accel
from mplexctl.accel import expectblocks, noop, overlap, routeblocks, verdicts
from mplexctl.config import parse_config
from mplexctl.config.yamlsrc import load_located
from tests.config.test_fuzz import EXAMPLE

pytestmark = pytest.mark.unit


def test_on_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(accel.SWITCH, raising=False)
    assert accel.enabled()
    assert routeblocks.load_located(EXAMPLE) is not None
    assert "\nexpect:\n" in EXAMPLE and expectblocks.load_located(EXAMPLE, load_located)
    assert verdicts.store() is not None
    path = tmp_path / "c.yaml"
    path.write_text(EXAMPLE)
    assert noop.source_digest(str(path)) is not None
    # parse_config reads the route and expect blocks without the ordinary path's help.
    monkeypatch.setattr("mplexctl.config.load_located", _refuse)
    assert parse_config(EXAMPLE).services


@pytest.mark.parametrize("value", ["0", " 0\n"])
def test_off_everything_not_applicable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str
) -> None:
    monkeypatch.setenv(accel.SWITCH, value)
    assert not accel.enabled()
    assert routeblocks.load_located(EXAMPLE) is None
    assert expectblocks.load_located(EXAMPLE, load_located) is None
    assert verdicts.store() is None
    path = tmp_path / "c.yaml"
    path.write_text(EXAMPLE)
    assert noop.source_digest(str(path)) is None
    assert overlap.load_and_probe(str(path)) is None  # before touching the kernel
    monkeypatch.setattr(routeblocks, "split", _refuse)
    monkeypatch.setattr(expectblocks, "split", _refuse)
    assert parse_config(EXAMPLE).services


def _refuse(*_args: object) -> None:
    raise AssertionError("not to be called here")


def test_other_values_leave_them_on(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("1", "", "yes"):
        monkeypatch.setenv(accel.SWITCH, value)
        assert accel.enabled()


def test_switch_reaches_a_fresh_process() -> None:
    code = "from mplexctl import accel; print(accel.enabled())"
    for env, want in (({}, "True"), ({accel.SWITCH: "0"}, "False")):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin", **env},
        )
        assert out.stdout.strip() == want
