"""`python -m benchmarks [--quick] [--only NAME ...]`: run the parts, print, write JSON."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable

from benchmarks import report
from benchmarks.report import PartResult

PARTS = (
    "testrun",
    "e2e",
    "flood",
    "control",
    "memory",
    "ifaces",
    "expect",
    "fastpath",
    "tchook",
)


def _runner(name: str) -> Callable[[bool], PartResult]:
    if name == "testrun":
        from benchmarks import testrun

        return testrun.run
    if name in ("e2e", "flood"):
        from benchmarks import e2e

        return e2e.run_throughput if name == "e2e" else e2e.run_flood
    if name == "ifaces":
        from benchmarks import ifaces

        return ifaces.run_ifaces
    if name == "tchook":
        from benchmarks import tchook

        return tchook.run
    if name == "expect":
        from benchmarks import expect

        return expect.run_expect
    if name == "fastpath":
        from benchmarks import fastpath

        return fastpath.run_fastpath
    if name == "control":
        from benchmarks import control

        return control.run_control
    from benchmarks import control

    return control.run_memory


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs")
    ap.add_argument("--only", action="append", choices=PARTS, help="run only this part")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("benchmarks: run as root (BPF, XDP, network namespaces)", file=sys.stderr)
        return 2
    results: list[PartResult] = []
    for name in args.only or PARTS:
        t0 = time.monotonic()
        print(f"== {name} ...", flush=True)
        try:
            res = _runner(name)(args.quick)
        except Exception as exc:  # a part failing must not hide the others
            traceback.print_exc()
            res = PartResult(name, error=f"{type(exc).__name__}: {exc}")
        results.append(res)
        print(f"== {name} done in {time.monotonic() - t0:.0f} s", flush=True)
    m = report.machine()
    print(f"\nmachine: nproc {m['nproc']}, kernel {m['kernel']}, {m['date']}")
    print(report.table(results))
    print()
    print(report.checks(results))
    path = report.write_json(results, sys.argv)
    print(f"\nresults: {path}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
