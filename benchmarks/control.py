"""Parts 4 and 5: control-plane wall times (mplexctl CLI), map fill, map memory, apply RSS."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks import configs, history_cost, netlab
from benchmarks.report import PartResult
from benchmarks.stats import median

MPLEXCTL = os.path.join(os.path.dirname(sys.executable), "mplexctl")


def cli(*args: str) -> tuple[float, int]:
    """Run mplexctl; (wall seconds, peak RSS KiB of that one process).

    The RSS comes from /usr/bin/time: a child forked straight from this (large, BCC-loaded)
    process would report this process's RSS as its own high-water mark."""
    t0 = time.perf_counter()
    res = subprocess.run(
        ["/usr/bin/time", "-f", "MAXRSS=%M", MPLEXCTL, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"mplexctl {' '.join(args)} -> {res.returncode}: {res.stderr.strip()}")
    kib = [int(ln[7:]) for ln in res.stderr.splitlines() if ln.startswith("MAXRSS=")]
    return wall, kib[-1] if kib else -1


def write(lb: netlab.Lab, name: str, text: str) -> str:
    path = os.path.join(lb.workdir, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def run_control(quick: bool = False) -> PartResult:
    res = PartResult("4 control")
    sizes = (10, 1_000, 65_536)
    reps = 3 if quick else 5
    cold_reps = 2 if quick else 3
    rss: dict[str, int] = {}
    scaling: dict[str, float] = {}
    with history_cost.state_dir(), netlab.lab() as lb:
        ns, dev = lb.ns_rx, lb.dev_rx
        history_rows(res, history_cost.measure(ns, dev, lb.workdir, 10 if quick else 30))
        for n in sizes:
            base = write(lb, f"r{n}.yaml", configs.config_text(dev, n))
            one = write(lb, f"r{n}-one.yaml", configs.config_text(dev, n, first_port=5101))
            full = write(lb, f"r{n}-full.yaml", configs.config_text(dev, n, shift=1))
            cold = []
            for _ in range(cold_reps):
                cli("detach", "--netns", ns)
                wall, kib = cli("apply", "--netns", ns, base)
                cold.append(wall)
                rss[f"cold apply {n}"] = max(rss.get(f"cold apply {n}", 0), kib)
            noop, onec, fullc = [], [], []
            for _ in range(reps):
                wall, kib = cli("apply", "--netns", ns, base)
                noop.append(wall)
                rss[f"no-op apply {n}"] = max(rss.get(f"no-op apply {n}", 0), kib)
                onec.append(cli("apply", "--netns", ns, one)[0])
                cli("apply", "--netns", ns, base)
                fullc.append(cli("apply", "--netns", ns, full)[0])
                cli("apply", "--netns", ns, base)
            if n == sizes[0]:
                scaling = {"no-op apply": median(noop), "one-route change": median(onec)}
            for label, xs in (
                ("cold apply (compile, load, attach)", cold),
                ("no-op apply", noop),
                ("one-route change", onec),
                ("full-table change (every route re-targeted)", fullc),
            ):
                res.row(f"{label}, {n} routes", median(xs), "s")
            big = n == 65_536
            if big:
                for label, xs in (("no-op apply", noop), ("one-route change", onec)):
                    small = scaling[label]
                    res.row(
                        f"{label}: 65,536 routes vs 10 routes",
                        median(xs) - small,
                        "s",
                        ratio=median(xs) / small,
                        note="what the table size still adds",
                    )
                res.check(
                    "no-op apply <= 0.3 s at 65,536", f"{median(noop):.3f} s", median(noop) <= 0.3
                )
                res.check(
                    "one-route change <= 0.3 s at 65,536",
                    f"{median(onec):.3f} s",
                    median(onec) <= 0.3,
                )
            res.check(
                f"cold apply <= 1 s at {n} routes", f"{median(cold):.3f} s", median(cold) <= 1.0
            )
        cli("detach", "--netns", ns)
    for k, v in rss.items():
        res.row(f"peak RSS, {k} routes", v / 1024, "MiB")
    fill, dump = map_fill(reps)
    res.row("map fill: write_table, 65,536 routes (one batch)", fill, "s")
    res.row("route map dump: batched lookup, 65,536 routes (each probe)", dump, "s")
    res.check("65,536-route map fill <= 0.25 s", f"{fill:.3f} s", fill <= 0.25)
    return res


def history_rows(res: PartResult, cost: dict[str, dict[str, float]]) -> None:
    """Issue #13: what recording history costs per apply (see benchmarks/history_cost.py)."""
    for n, c in cost.items():
        size = f"{int(n):,} routes"
        res.row(f"history in a one-route change, {size}", c["change"] * 1e3, "ms")
        res.row(f"history in a no-op apply, {size}", c["noop"] * 1e3, "ms")
        res.row(
            f"history record written synchronously, {size}",
            c["sync"] * 1e3,
            "ms",
            note="comparison: write+fsync+rename in the apply's thread",
        )
        res.row(f"every verb's pending-window check, {size}", c["verb"] * 1e3, "ms")
    worst = max(max(c["change"], c["noop"]) for c in cost.values())
    res.check("history <= 5 ms per apply", f"{worst * 1e3:.2f} ms", worst <= 0.005)


def map_fill(reps: int) -> tuple[float, float]:
    """(fill, dump): ProgramMaps.write_table of 65,536 routes into the empty route map of a
    loaded program (what a cold apply does), and one batched dump of that map (what every
    probe does)."""
    from benchmarks.testrun import load_mplex

    ld, pm, _fd = load_mplex(65_536)
    try:
        from mplexctl.compiler.build import compile_config
        from mplexctl.config import parse_config

        build = compile_config(parse_config(configs.config_text("mpxb-f0", 65_536)))
        svc = build.services[0]
        keys = [r.key(0) for r in build.routes]
        fills, dumps = [], []
        for _ in range(reps):
            # Empty the table between fills: tombstone every live slot at once (this bench
            # writes no service row, so delete_routes would first index every slot).
            pm.slots.tombstone(pm.slots.live())
            t0 = time.perf_counter()
            pm.write_table(svc.index, 0, svc.routes)
            fills.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            dump = pm.route_dump()
            dumps.append(time.perf_counter() - t0)
            assert dump.count == len(keys)
        return median(fills), median(dumps)
    finally:
        ld.close()


def fdinfo_memlock(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as fh:
        for ln in fh:
            if ln.startswith("memlock:"):
                return int(ln.split()[1])
    return -1


def run_memory(quick: bool = False) -> PartResult:
    from benchmarks.testrun import load_mplex

    res = PartResult("5 memory")
    ld, _pm, _fd = load_mplex(65_536)
    try:
        total = 0
        for name, m in sorted(ld.maps.items()):
            b = fdinfo_memlock(m.fd)
            total += b
            res.row(f"map {name} (max {m.info.max_entries})", b / 2**20, "MiB", note="memlock")
        res.row("all maps, 65,536 routes (route map holds 2 x 65,536)", total / 2**20, "MiB")
    finally:
        ld.close()
    with netlab.lab() as lb:
        path = write(lb, "mem.yaml", configs.config_text(lb.dev_rx, 65_536))
        _, cold = cli("apply", "--netns", lb.ns_rx, path)
        _, noop = cli("apply", "--netns", lb.ns_rx, path)
        cli("detach", "--netns", lb.ns_rx)
    res.row("peak RSS, cold apply, 65,536 routes", cold / 1024, "MiB")
    res.row("peak RSS, no-op apply, 65,536 routes", noop / 1024, "MiB")
    return res
