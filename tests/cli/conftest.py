"""Fixtures of the CLI tests."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def _others_can_reach_the_checkout() -> Iterator[None]:
    """Some CLI tests run mplexctl as `nobody`: every folder above the checkout (and .venv)
    must let others pass (a clone under `mktemp -d` is 0700). Adds o+x where it is missing
    for the session and restores the modes afterwards."""
    changed: list[tuple[Path, int]] = []
    for d in [ROOT, *ROOT.parents]:
        mode = d.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(d, mode | stat.S_IXOTH)
            changed.append((d, mode))
    try:
        yield
    finally:
        for d, mode in changed:
            os.chmod(d, stat.S_IMODE(mode))
