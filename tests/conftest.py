"""Shared fixtures: the two-host `lab`; kernel tests need root (fail without it, never skip)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.lab import Lab


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A kernel-marked test run without root is an error with a reason, never a silent skip."""
    if item.get_closest_marker("kernel") is not None and os.geteuid() != 0:
        pytest.fail(
            "this test is marked `kernel`: it needs root (BPF, network namespaces, XDP); "
            "run it as root, or deselect kernel tests with -m 'not kernel'",
            pytrace=False,
        )


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh two-namespace lab (src -> veth -> dst), deleted afterwards whatever happens."""
    with Lab() as fresh:
        yield fresh
