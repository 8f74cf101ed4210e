"""Part 9: the TC hook and the reply path in BPF_PROG_TEST_RUN, each against its floor.

Floors: a trivial XDP_PASS program (XDP) and a trivial TC program returning TC_ACT_UNSPEC
(TC), measured in the same run. Paths: the rewrite at either hook without `reply: restore`,
with it (the ingress also records the flow: an LRU lookup), and the egress restore of a reply
(a flow-table lookup, checksum helper, port write). The reply path's cost is
(rewrite with restore + egress restore) / (rewrite without restore).

Same trick as part 1 against test run's buffer reuse: the measured tag is routed to the
service port itself, so the rewrite leaves the frame as it was; the recorded flow then maps
the service port to itself, and the reply frame is restored to the same bytes each time.
"""

from __future__ import annotations

from typing import Any

from benchmarks import configs, frames
from benchmarks.report import PartResult
from benchmarks.stats import median
from mplexctl import constants as C
from mplexctl.backend import bpfsys, loader
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import RouteEntry, compile_config
from mplexctl.config import parse_config

TC_PASS_SRC = "int tc_pass(struct __sk_buff *skb) { return -1; }"
XDP_PASS_SRC = "int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }"


def _load(restore: bool) -> tuple[Any, ProgramMaps]:
    text = configs.config_text("mpxb-tc0", 3).replace("    xdp_mode: auto", "    hook: tc")
    if restore:
        text = text.replace("  - name: bench\n", "  - name: bench\n    reply: restore\n")
    build = compile_config(parse_config(text, "bench-tc.yaml"))
    ld = loader.compile_and_load(build)
    pm = ProgramMaps.from_fd(ld.prog_fd, ld.maps)
    pm.fill(build)
    key = RouteEntry(0, b"600", configs.SERVICE_PORT).key(0)
    pm.write_routes([(key, layout.route_value(configs.SERVICE_PORT))])
    return ld, pm


def reply_of(frame: bytes) -> bytes:
    """The reply to an IPv4 frame of frames.udp_frame: addresses and ports swapped (the
    checksums stay valid: one's complement sums do not depend on the order)."""
    f = bytearray(frame)
    f[26:30], f[30:34] = frame[30:34], frame[26:30]
    f[34:36], f[36:38] = frame[36:38], frame[34:36]
    return bytes(f)


def run(quick: bool = False) -> PartResult:
    from bcc import BPF

    res = PartResult("9 tc hook")
    repeat = 200_000 if quick else 1_000_000
    rounds = 5
    errors: list[str] = []
    floors = BPF(text=TC_PASS_SRC + "\n" + XDP_PASS_SRC)
    tc_pass = floors.load_func("tc_pass", BPF.SCHED_CLS).fd
    xdp_pass = floors.load_func("xdp_pass", BPF.XDP).fd
    plain, plain_pm = _load(False)
    restore, restore_pm = _load(True)
    try:
        fr = frames.udp_frame(configs.SERVICE_PORT, frames.payload(b"600"))
        other = frames.udp_frame(configs.NON_SERVICE_PORT, frames.payload(b"600"))
        # One real run records the flow the egress measurement restores.
        first = bpfsys.prog_test_run(restore.fds[C.PROG_TC_IN], fr, 1)
        if first.data != fr:
            errors.append("timing variant: the rewrite changed the frame")
        back = bpfsys.prog_test_run(restore.fds[C.PROG_TC_OUT], reply_of(fr), 1)
        if back.data != reply_of(fr) or not restore_pm.replies_by_slot():
            errors.append("egress: the reply was not restored")
        cases = {
            "floor XDP_PASS": (xdp_pass, fr),
            "floor TC pass": (tc_pass, fr),
            "XDP rewrite": (plain.prog_fd, fr),
            "TC rewrite": (plain.fds[C.PROG_TC_IN], fr),
            "TC non-service": (plain.fds[C.PROG_TC_IN], other),
            "TC rewrite, reply: restore (flow recorded)": (restore.fds[C.PROG_TC_IN], fr),
            "TC egress restore (recorded reply)": (restore.fds[C.PROG_TC_OUT], reply_of(fr)),
            "TC egress, not a recorded flow": (restore.fds[C.PROG_TC_OUT], other),
        }
        samples: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(rounds):
            for name, (fd, frame) in cases.items():
                samples[name].append(bpfsys.prog_test_run(fd, frame, repeat).duration_ns)
        ns = {k: median(v) for k, v in samples.items()}
        res.extra = {"repeat": repeat, "rounds": rounds, "samples_ns": samples}
        for name in cases:
            floor = ns["floor XDP_PASS"] if name.startswith(("XDP", "floor XDP")) else None
            floor = floor or ns["floor TC pass"]
            res.row(name, ns[name], "ns/pkt", ns[name] / floor)
        cost = (ns[list(cases)[5]] + ns[list(cases)[6]]) / ns["TC rewrite"]
        res.check("correctness (repeat=1)", "; ".join(errors) or "ok", not errors)
        res.check(
            "(info) reply path: (rewrite+record + egress restore) / rewrite only",
            f"{cost:.2f}x",
            True,
        )
    finally:
        plain.close()
        restore.close()
        floors.cleanup()
    return res
