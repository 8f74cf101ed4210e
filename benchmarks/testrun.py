"""Part 1: per-packet cost in BPF_PROG_TEST_RUN, mplex vs a trivial XDP_PASS program.

Test run reuses one buffer across repeats, so a rewritten packet would stop matching after the
first iteration. Correctness is checked with repeat=1 on the real program and real routes; for
timing the route of the measured tag is written straight into the map (bypassing config
validation) with the service's own port as target: the unmodified program then does the same
work every iteration (parse, service match, window check, tag read, hash lookup, route
counters, incremental checksum, port write), and the frame stays the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks import configs
from benchmarks.report import PartResult
from benchmarks.stats import median
from mplexctl.backend import bpfsys, loader
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import RouteEntry, compile_config
from mplexctl.config import parse_config
from tests.support.frames import l4_checksum_ok, payload, ports, udp_frame

XDP_DROP, XDP_PASS = 1, 2
KINDS = {
    "ipv4": (False, None),
    "ipv6": (True, None),
    "ipv4+vlan": (False, 7),
    "ipv6+vlan": (True, 7),
}
PATHS = ("rewrite", "drop_length", "drop_unknown_tag", "non_service")
PASS_SRC = "int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }"


@dataclass
class Case:
    name: str
    prog_fd: int
    frame: bytes
    kind: str
    path: str  # "floor" or one of PATHS
    table: int  # routes in the table, 0 for the floor


def frame_for(path: str, kind: str) -> bytes:
    ipv6, vlan = KINDS[kind]
    tag = b"600"
    if path == "drop_length":
        data = payload(tag, configs.BAD_LEN)
    elif path == "drop_unknown_tag":
        data = payload(configs.UNKNOWN_TAG)
    else:
        data = payload(tag)
    port = configs.NON_SERVICE_PORT if path == "non_service" else configs.SERVICE_PORT
    return udp_frame(data, port, 6 if ipv6 else 4, vlan=vlan)


def check_real(fd: int, errors: list[str], label: str) -> None:
    """repeat=1 on the real routes: every path gives the documented verdict and output."""
    for kind in KINDS:
        for path in PATHS:
            fr = frame_for(path, kind)
            tr = bpfsys.prog_test_run(fd, fr, 1)
            want = XDP_PASS if path in ("rewrite", "non_service") else XDP_DROP
            ok = tr.retval == want
            if path == "rewrite":
                ok = ok and ports(tr.data)[1] == configs.BACKENDS[b"600"]
                ok = ok and l4_checksum_ok(tr.data)
            elif path == "non_service":
                ok = ok and tr.data == fr
            if not ok:
                errors.append(f"{label} {kind} {path}: retval {tr.retval}")


def load_mplex(n_routes: int) -> tuple[Any, ProgramMaps, int]:
    cfg = parse_config(configs.config_text("mpxb-tr0", n_routes), f"bench-{n_routes}.yaml")
    build = compile_config(cfg)
    ld = loader.compile_and_load(build)
    pm = ProgramMaps.from_fd(ld.prog_fd, ld.maps)
    pm.fill(build)
    return ld, pm, ld.prog_fd


def run(quick: bool = False) -> PartResult:
    from bcc import BPF

    res = PartResult("1 test_run")
    repeat = 200_000 if quick else 1_000_000
    rounds = 5
    tables = (3, 65_536)
    errors: list[str] = []
    trivial = BPF(text=PASS_SRC)
    pass_fd = trivial.load_func("xdp_pass", BPF.XDP).fd
    loaded = []
    cases: list[Case] = []
    try:
        for kind in KINDS:
            cases.append(
                Case(f"floor {kind}", pass_fd, frame_for("rewrite", kind), kind, "floor", 0)
            )
        for n in tables:
            ld, pm, fd = load_mplex(n)
            loaded.append(ld)
            check_real(fd, errors, f"{n} routes")
            # Timing variant: tag 600 routed to the service port itself (see module doc).
            key = RouteEntry(0, b"600", configs.SERVICE_PORT).key(0)
            pm.write_routes([(key, layout.route_value(configs.SERVICE_PORT))])
            for kind in KINDS:
                for path in PATHS:
                    fr = frame_for(path, kind)
                    tr = bpfsys.prog_test_run(fd, fr, 1)
                    if path == "rewrite" and (tr.retval != XDP_PASS or tr.data != fr):
                        errors.append(f"timing variant {kind}: output frame differs")
                    cases.append(Case(f"{path} {kind} {n}", fd, fr, kind, path, n))
        samples: dict[str, list[float]] = {c.name: [] for c in cases}
        for _ in range(rounds):
            for c in cases:
                samples[c.name].append(bpfsys.prog_test_run(c.prog_fd, c.frame, repeat).duration_ns)
        ns = {k: median(v) for k, v in samples.items()}
        res.extra = {"repeat": repeat, "rounds": rounds, "samples_ns": samples, "errors": errors}
        for kind in KINDS:
            res.row(f"XDP_PASS floor, {kind}", ns[f"floor {kind}"], "ns/pkt", 1.0)
        worst: dict[str, float] = {}
        for n in tables:
            for path in PATHS:
                for kind in KINDS:
                    v = ns[f"{path} {kind} {n}"]
                    ratio = v / ns[f"floor {kind}"]
                    worst[path] = max(worst.get(path, 0.0), ratio)
                    res.row(f"{path}, {kind}, {n} routes", v, "ns/pkt", ratio)
        res.check(
            "correctness (repeat=1, real routes)", "; ".join(errors) or "all paths ok", not errors
        )
        res.check(
            "rewrite <= 2.5x floor (worst case)",
            f"{worst['rewrite']:.2f}x",
            worst["rewrite"] <= 2.5,
        )
        res.check(
            "non-service <= 1.5x floor (worst case)",
            f"{worst['non_service']:.2f}x",
            worst["non_service"] <= 1.5,
        )
    finally:
        for ld in loaded:
            ld.close()
        trivial.cleanup()
    return res
