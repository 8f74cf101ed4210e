"""Part 8 (issue #16): the call-free route lookup against the previous program, same run.

The previous data plane (routes in a per-CPU hash, tests/support/previous_v2/) and the current one
are loaded for the same config at 3 and 65,536 routes and timed in BPF_PROG_TEST_RUN,
alternating case by case each round, against a trivial XDP_PASS floor (kernel-reported
ns/packet; the timing variant routes tag 600 to the service port itself, see testrun.py).
The crafted worst-case miss is an unknown tag whose home slot starts the longest run of
occupied slots of the current table (found with the table's seed, which an attacker does not
have); the reference's worst miss is the slower of the same crafted tag and the usual unknown
tag (its hash is seeded by the kernel: no tag can be crafted for it here). Route map memory
comes from fdinfo memlock. The control plane rows time ProgramMaps.fill (cold fill) and one
re-target through engine.execute's route step, on both programs.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks import configs
from benchmarks.control import fdinfo_memlock
from benchmarks.report import PartResult
from benchmarks.stats import median
from benchmarks.testrun import KINDS, PASS_SRC, XDP_PASS, check_real, frame_for
from mplexctl import constants as C
from mplexctl.backend import bpfsys, loader
from mplexctl.backend.program import ProgramMaps
from mplexctl.backend.routes import homes
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build, RouteEntry, compile_config
from mplexctl.config import parse_config
from mplexctl.engine.execute import _service_op
from mplexctl.engine.plan import ServiceOp
from tests.support.frames import payload, udp_frame

PATHS = ("rewrite", "drop_unknown_tag", "drop_length", "non_service", "worst_miss")
VARIANTS = ("ref", "new")


def reference_build(build: Build) -> Build:
    """`build` with the previous program's C text (same config header)."""
    from tests.support.previous_release import build_v2

    return build_v2(build)


def _load(build: Build) -> tuple[Any, ProgramMaps]:
    ld = loader.compile_and_load(build)
    pm = ProgramMaps.from_fd(ld.prog_fd, ld.maps)
    pm.fill(build)
    return ld, pm


def crafted_miss(pm: ProgramMaps, routes: set[bytes], tries: int = 400_000) -> tuple[bytes, int]:
    """(tag, slots probed) of the unknown 3-byte tag that probes most slots of the table."""
    t = pm.slots
    _which, row = pm.live_row(0)
    keys = t.keys()
    run = [0] * (t.nslots + 1)  # occupied slots from each slot on, up to the first EMPTY
    for i in range(t.nslots - 1, -1, -1):
        run[i] = 0 if keys[i] == C.ROUTE_KEY_EMPTY else run[i + 1] + 1
    best, best_tag = -1, b""
    rnd = os.urandom(3 * tries)
    tags = [rnd[3 * i : 3 * i + 3] for i in range(tries)]
    words = [int.from_bytes(x, "little") for x in tags]
    for tag, h in zip(tags, homes(words, row.seed, t.bits), strict=True):
        probed = min(row.probes, run[h] + 1)
        if probed > best and tag not in routes:
            best, best_tag = probed, tag
            if best >= row.probes:
                break
    return best_tag, best


def _miss_frame(tag: bytes, kind: str) -> bytes:
    ipv6, vlan = KINDS[kind]
    return udp_frame(payload(tag), configs.SERVICE_PORT, 6 if ipv6 else 4, vlan=vlan)


def _route_op(build: Build, tag: bytes, port: int) -> tuple[Build, ServiceOp]:
    svc = build.services[0]
    want = dict(svc.routes)
    want[tag] = port
    import dataclasses
    from types import MappingProxyType

    desired = dataclasses.replace(svc, routes=MappingProxyType(want))
    return build, ServiceOp(0, "route", desired, svc, (tag,))


def _clear(pm: ProgramMaps) -> None:
    """Empty the route table (not timed): before each cold fill."""
    if pm.hashed:
        dump = pm.route_dump()
        for prefix in list(dump.groups):
            pm.maps[C.MAP_ROUTES].delete_batch_raw(*dump.packed_keys(prefix))
    else:
        t = pm.slots
        t.mm[: t.nslots * 16] = bytes(t.nslots * 16)


def run_fastpath(quick: bool = False) -> PartResult:
    from bcc import BPF

    res = PartResult("8 fast path")
    repeat = 200_000 if quick else 1_000_000
    rounds = 5 if quick else 9
    tables = (3, 65_536)
    errors: list[str] = []
    trivial = BPF(text=PASS_SRC)
    pass_fd = trivial.load_func("xdp_pass", BPF.XDP).fd
    loaded: list[Any] = []
    cases: list[tuple[str, int, bytes]] = []
    progs: dict[tuple[str, int], tuple[Build, ProgramMaps]] = {}
    fds: dict[tuple[str, int], int] = {}
    probed: dict[int, int] = {}
    try:
        for kind in KINDS:
            cases.append((f"floor {kind}", pass_fd, frame_for("rewrite", kind)))
        for n in tables:
            cfg = parse_config(configs.config_text("mpxb-fp0", n), f"bench-{n}.yaml")
            build = compile_config(cfg)
            for variant, b in (("new", build), ("ref", reference_build(build))):
                ld, pm = _load(b)
                loaded.append(ld)
                progs[(variant, n)] = (b, pm)
                fds[(variant, n)] = ld.prog_fd
                check_real(ld.prog_fd, errors, f"{variant} {n} routes")
            tag, probed[n] = crafted_miss(progs[("new", n)][1], set(build.services[0].routes))
            for variant in VARIANTS:
                b, pm = progs[(variant, n)]
                fd = fds[(variant, n)]
                key = RouteEntry(0, b"600", configs.SERVICE_PORT).key(0)
                pm.write_routes([(key, layout.route_value(configs.SERVICE_PORT))])
                for kind in KINDS:
                    for path in PATHS:
                        fr = (
                            _miss_frame(tag, kind)
                            if path == "worst_miss"
                            else frame_for(path, kind)
                        )
                        tr = bpfsys.prog_test_run(fd, fr, 1)
                        if path == "rewrite" and (tr.retval != XDP_PASS or tr.data != fr):
                            errors.append(f"{variant} timing variant {kind}: output differs")
                        cases.append((f"{variant} {path} {kind} {n}", fd, fr))
        samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(rounds):
            for name, fd, fr in cases:
                samples[name].append(bpfsys.prog_test_run(fd, fr, repeat).duration_ns)
        ns = {k: median(v) for k, v in samples.items()}
        for kind in KINDS:
            res.row(f"XDP_PASS floor, {kind}", ns[f"floor {kind}"], "ns/pkt", 1.0)
        worst: dict[tuple[str, str], float] = {}
        for variant in VARIANTS:
            for n in tables:
                for path in PATHS:
                    for kind in KINDS:
                        v = ns[f"{variant} {path} {kind} {n}"]
                        ratio = v / ns[f"floor {kind}"]
                        k = (variant, path)
                        worst[k] = max(worst.get(k, 0.0), ratio)
                        res.row(f"{variant}: {path}, {kind}, {n} routes", v, "ns/pkt", ratio)
        ref_miss = max(worst[("ref", "worst_miss")], worst[("ref", "drop_unknown_tag")])
        res.check("correctness (repeat=1, both programs)", "; ".join(errors) or "ok", not errors)
        for path, limit in (("rewrite", 2.2), ("drop_unknown_tag", 2.0)):
            w = worst[("new", path)]
            res.check(
                f"{path} <= {limit}x floor (worst of 8)",
                f"{w:.2f}x (reference {worst[('ref', path)]:.2f}x)",
                w <= limit,
            )
        for path in ("non_service", "drop_length"):
            w, r = worst[("new", path)], worst[("ref", path)]
            res.check(f"{path} no worse than reference", f"{w:.2f}x vs {r:.2f}x", w <= r * 1.02)
        w = worst[("new", "worst_miss")]
        res.check(
            "crafted worst-case miss <= 1.1x reference's worst",
            f"{w:.2f}x vs {ref_miss:.2f}x floor ({probed} slots probed)",
            w <= 1.1 * ref_miss,
        )
        _memory(res, progs)
        _control(res, progs, rounds)
        res.extra = {"repeat": repeat, "rounds": rounds, "samples_ns": samples, "errors": errors}
    finally:
        for _, pm in progs.values():
            pm.close()
        for ld in loaded:
            ld.close()
        trivial.cleanup()
    return res


def _memory(res: PartResult, progs: dict[tuple[str, int], tuple[Build, ProgramMaps]]) -> None:
    ncpu = bpfsys.possible_cpus()
    totals = {}
    for variant in VARIANTS:
        _b, pm = progs[(variant, 65_536)]
        fixed = per_cpu = 0
        for name in (C.MAP_ROUTES, C.MAP_ROUTE_CTR):
            m = pm.maps.get(name)
            if m is None:
                continue
            b = fdinfo_memlock(m.fd)
            share = m.info.max_entries * m.stride * ncpu if m.percpu else 0
            fixed, per_cpu = fixed + b - share, per_cpu + share // ncpu
            res.row(f"{variant}: map {name} (max {m.info.max_entries})", b / 2**20, "MiB")
        totals[variant] = (fixed, per_cpu)
        for cpus in (1, 2, 8, 64):
            res.row(
                f"{variant}: route maps at 65,536 routes, {cpus} CPUs (estimate)",
                (fixed + per_cpu * cpus) / 2**20,
                "MiB",
                note=f"measured here at {ncpu} CPUs",
            )
    nf, np_ = totals["new"]
    rf, rp = totals["ref"]
    res.check(
        "route map memory at 65,536 routes <= reference (every CPU count)",
        f"{(nf + np_ * ncpu) / 2**20:.1f} vs {(rf + rp * ncpu) / 2**20:.1f} MiB at {ncpu} CPUs",
        nf <= rf and np_ <= rp,
    )


def _control(
    res: PartResult, progs: dict[tuple[str, int], tuple[Build, ProgramMaps]], rounds: int
) -> None:
    fill: dict[str, list[float]] = {v: [] for v in VARIANTS}
    change: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS:
            build, pm = progs[(variant, 65_536)]
            _clear(pm)
            t0 = time.perf_counter()
            pm.fill(build)
            fill[variant].append(time.perf_counter() - t0)
            port = 6000 + r % 2
            b, op = _route_op(build, b"601", port)
            t0 = time.perf_counter()
            _service_op(pm, op, b)
            change[variant].append(time.perf_counter() - t0)
    for what, d in (("cold fill", fill), ("one-route change", change)):
        n, ref = median(d["new"]), median(d["ref"])
        res.row(f"new: {what}, 65,536 routes", n * 1000, "ms", n / ref)
        res.row(f"ref: {what}, 65,536 routes", ref * 1000, "ms", 1.0)
        res.check(
            f"{what} at 65,536 routes <= 1.2x reference",
            f"{n * 1000:.2f} vs {ref * 1000:.2f} ms ({n / ref:.2f}x)",
            n <= 1.2 * ref,
        )
