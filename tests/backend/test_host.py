"""host.in_background: the result or the exception of the other thread, always joined."""

from __future__ import annotations

import threading
import time

import pytest

from mplexctl.backend.host import in_background

pytestmark = pytest.mark.unit


def test_result_comes_back_and_runs_concurrently() -> None:
    started = threading.Event()

    def slow() -> int:
        started.set()
        time.sleep(0.05)
        return 42

    with in_background(slow) as pending:
        assert started.wait(1.0)  # the block runs while the function does
    assert pending.result() == 42


def test_exception_is_raised_by_result() -> None:
    def boom() -> int:
        raise ValueError("kernel said no")

    with in_background(boom) as pending:
        pass
    with pytest.raises(ValueError, match="kernel said no"):
        pending.result()


def test_thread_is_joined_when_the_block_fails() -> None:
    done = threading.Event()

    def work() -> None:
        time.sleep(0.05)
        done.set()

    with pytest.raises(RuntimeError), in_background(work):
        raise RuntimeError("config error")
    assert done.is_set()
