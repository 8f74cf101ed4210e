"""The accelerators' own tests run them switched on, whatever MPLEXCTL_ACCEL the suite has
(each test that checks the switch sets it itself)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def accel_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLEXCTL_ACCEL", "1")
