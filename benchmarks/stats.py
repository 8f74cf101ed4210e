"""Small helpers shared by the benchmark parts."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def run(cmd: list[str], timeout: float = 120.0, check: bool = True) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> {res.returncode}: {res.stderr.strip()[-400:]}")
    return res.stdout


def now() -> float:
    return time.perf_counter()
