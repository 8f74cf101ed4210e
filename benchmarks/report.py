"""Result rows, target checks, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    part: str
    name: str
    value: float
    unit: str
    ratio: float | None = None  # to the part's reference (floor, no program, ...)
    note: str = ""


@dataclass
class Check:
    target: str
    figure: str
    passed: bool


@dataclass
class PartResult:
    part: str
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def row(
        self, name: str, value: float, unit: str, ratio: float | None = None, note: str = ""
    ) -> None:
        self.rows.append(Row(self.part, name, value, unit, ratio, note))

    def check(self, target: str, figure: str, passed: bool) -> None:
        self.checks.append(Check(target, figure, passed))


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
    }


def _fmt(v: float) -> str:
    if v != v:  # nan
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def table(results: list[PartResult]) -> str:
    out = ["| part | measurement | value | unit | ratio | note |", "|---|---|---|---|---|---|"]
    for r in results:
        for row in r.rows:
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
            cells = [row.part, row.name, _fmt(row.value), row.unit, ratio, row.note]
            out.append("| " + " | ".join(cells) + " |")
        if r.error:
            out.append(f"| {r.part} | ERROR | | | | {r.error} |")
    return "\n".join(out)


def checks(results: list[PartResult]) -> str:
    lines = []
    for r in results:
        for c in r.checks:
            lines.append(f"{'PASS' if c.passed else 'FAIL'}  [{r.part}] {c.target}: {c.figure}")
    return "\n".join(lines)


def write_json(results: list[PartResult], argv: list[str], path_dir: str = "bench-results") -> str:
    os.makedirs(path_dir, exist_ok=True)
    path = os.path.join(path_dir, time.strftime("bench-%Y%m%d-%H%M%S.json"))
    doc = {"machine": machine(), "argv": argv, "parts": [asdict(r) for r in results]}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    with open(os.path.join(path_dir, "latest.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    return path
