"""The kernel side of `expect:`: run a prepared program (loaded, maps filled, not attached) on
each expectation's packet with BPF_PROG_TEST_RUN, and read what it did from its own counters.

Used by `mplexctl test` (engine/prove.py) and by apply before every attach (engine/execute.py).
The model's side is contract/expect.py; both speak in Outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from mplexctl import constants as C
from mplexctl.backend.bpfsys import prog_test_run
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.config.model import Expectation
from mplexctl.contract.expect import PASS, Outcome, expected, failure
from mplexctl.contract.packet import build_frame, payload_of, service_for
from mplexctl.errors import ExpectationError

ACTIONS = {C.XDP_DROP: "drop", C.XDP_PASS: "pass"}


@dataclass(frozen=True)
class KernelResult:
    exp: Expectation
    got: Outcome

    @property
    def ok(self) -> bool:
        return self.got == expected(self.exp)


def _outcome(retval: int, data: bytes, l4: int, moved: list[tuple[int, int]]) -> Outcome:
    """The verdict is the one counter the packet moved (none: not a service packet); the XDP
    action must be the verdict's, and a rewrite's new port is read from the output frame."""
    action = ACTIONS.get(retval, f"action {retval}")
    if not moved:
        return Outcome(PASS) if action == "pass" else Outcome(f"XDP {action} without a counter")
    if len(moved) > 1:
        return Outcome("several counters: " + ", ".join(C.VERDICTS[v] for _, v in moved))
    verdict = C.VERDICTS[moved[0][1]]
    if action != ("drop" if verdict.startswith("drop_") else "pass"):
        return Outcome(f"{verdict} with XDP {action}")
    if verdict == "rewrite":
        return Outcome(verdict, int.from_bytes(data[l4 + 2 : l4 + 4], "big"))
    return Outcome(verdict)


LOOPBACK_IFINDEX = 1  # a test run's packet arrives on the namespace's loopback device


def _test_slot(pm: ProgramMaps) -> int:
    """The counter slot test-run packets count under: that of ifindex 1 (normally none)."""
    return pm.if_slots().get(LOOPBACK_IFINDEX, C.IF_SLOT_NONE)


def _slot_packets(pm: ProgramMaps, slot: int, services: int) -> list[int]:
    """Packets of each (service, verdict) row of one counter slot, summed over CPUs, for the
    first `services` services (one lookup per row: the compiled services' rows, not the
    whole counter map)."""
    m = pm.maps[C.MAP_SVC_STATS]
    first = layout.stats_row(slot, 0, 0, pm.n_services)
    out = []
    for row in range(first, first + services * len(C.VERDICTS)):
        raw = m.lookup(layout.U32.pack(row)) or b""
        out.append(sum(layout.COUNTER.unpack(v)[0] for v in m.per_cpu(raw) if v))
    return out


def run_expectations(prog_fd: int, pm: ProgramMaps, build: Build) -> list[KernelResult]:
    """Every expectation of build's config, run once (repeat=1) in the kernel."""
    out = []
    slot = _test_slot(pm)
    nv = len(C.VERDICTS)
    services = len(build.services)
    before = _slot_packets(pm, slot, services)
    for exp in build.config.expectations:
        built = build_frame(build.config, exp.packet)
        run = prog_test_run(prog_fd, built.frame, repeat=1)
        after = _slot_packets(pm, slot, services)
        moved = [
            divmod(i, nv) for i, (a, b) in enumerate(zip(after, before, strict=True)) if a != b
        ]
        before = after
        out.append(KernelResult(exp, _outcome(run.retval, run.data, built.l4, moved)))
    return out


def reset_counters(pm: ProgramMaps, build: Build, results: list[KernelResult]) -> None:
    """Zero what the test packets counted: the counter slot they counted under, and the
    routes they took (rewritten with their port and fresh counters, as fill wrote them)."""
    pm.zero_slot(_test_slot(pm))
    index = {s.name: s.index for s in build.services}
    routes: dict[bytes, bytes | list[bytes]] = {}
    for r in results:
        svc = service_for(build.config, r.exp.packet.protocol, r.exp.packet.port)
        if r.got.verdict != "rewrite" or svc is None:
            continue
        tag = payload_of(build.config, r.exp.packet)[svc.tag.offset :][: svc.tag.length]
        if tag in svc.table:
            key = layout.route_key(index[svc.name], 0, tag)
            routes[key] = layout.route_value(svc.table[tag])
    if routes:
        pm.write_routes(list(routes.items()))


def prove_in_kernel(prog_fd: int, pm: ProgramMaps, build: Build, where: str) -> None:
    """Before a prepared program is attached: every expectation holds in the kernel (else
    ExpectationError, exit 5), then the counters its test packets moved are zeroed."""
    if not build.config.expectations:
        return
    results = run_expectations(prog_fd, pm, build)
    failed = [failure(build.config.source, r.exp, r.got, "(kernel)") for r in results if not r.ok]
    if failed:
        raise ExpectationError(failed, where)
    reset_counters(pm, build, results)
