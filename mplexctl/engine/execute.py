"""Stage 6: carry out a Plan. Ordered so that a crash at any point leaves a state the next
apply converges from, and the previous configuration stays in force until a switch."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from mplexctl.backend import bpfsys, netlink
from mplexctl.backend.host import fault_point
from mplexctl.backend.loader import compile_and_load
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.engine.plan import InterfacePlan, Plan, ServiceOp
from mplexctl.engine.state import InterfaceState, LiveState
from mplexctl.errors import HostError, KernelError


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)
    compiles: int = 0


def _now_ns() -> int:
    return time.time_ns()


def _prog_fd(prog_id: int, iface: str) -> int:
    try:
        return bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        raise KernelError(f"{iface}: program {prog_id} vanished during apply; re-run") from None


def _link(name: str) -> netlink.LinkXdp:
    link = netlink.get_link(name)
    if link is None:
        raise HostError(f"interface {name} disappeared during apply")
    return link


def _install(ip: InterfacePlan, build: Build, live: InterfaceState, out: Outcome) -> None:
    """attach / swap / replace-foreign / mode-change: a new program, filled, then attached."""
    loaded = compile_and_load(build)
    out.compiles += 1
    try:
        fault_point("after-load")
        seq = live.program.seq + 1 if live.program else 1
        ProgramMaps.from_fd(loaded.prog_fd, loaded.maps).fill(build, seq, _now_ns())
        fault_point("after-fill")
        link = _link(ip.name)
        if ip.program_action == "attach":
            _attach_mode(link, loaded.prog_fd, ip.mode, out)
        elif ip.program_action == "mode-change":
            old = _prog_fd(live.prog_id, ip.name)
            try:
                netlink.detach(link, expected_fd=old)
            finally:
                os.close(old)
            _attach_mode(_link(ip.name), loaded.prog_fd, ip.mode, out)
        else:  # swap, replace-foreign: atomic, the old program stays until the switch
            old = _prog_fd(live.prog_id, ip.name)
            try:
                mode = link.mode if link.mode in ("native", "generic") else "native"
                netlink.attach(link, loaded.prog_fd, mode, expected_fd=old)
            finally:
                os.close(old)
        fault_point("after-attach")
    finally:
        loaded.close()


def _attach_mode(link: netlink.LinkXdp, fd: int, mode: str, out: Outcome) -> None:
    if mode != "auto":
        netlink.attach(link, fd, mode)
        return
    try:
        netlink.attach(link, fd, "native")
        out.notes.append(f"{link.name}: xdp_mode auto: attached in native mode")
    except HostError as exc:
        netlink.attach(link, fd, "generic")
        out.notes.append(f"{link.name}: xdp_mode auto: native failed ({exc}); using generic")


def _route_values(
    pm: ProgramMaps,
    svc: ServiceOp,
    slot: int,
    live_entries: dict[bytes, list[bytes]],
    live_slot: int,
) -> list[tuple[bytes, bytes]]:
    """Desired entries of one service under `slot`, keeping the counters of kept tags."""
    items = []
    for tag, port in svc.service.routes:
        old = live_entries.get(layout.route_key(svc.index, live_slot, tag))
        packets = nbytes = 0
        if old is not None:
            for v in old:
                _p, _a, _b, pk, by = layout.ROUTE.unpack(v)
                packets, nbytes = packets + pk, nbytes + by
        # Counters of a kept route move to CPU 0's copy; the sum is what status reports.
        items.append(
            (layout.route_key(svc.index, slot, tag), layout.route_value(port, packets, nbytes))
        )
    return items


def _service_op(pm: ProgramMaps, op: ServiceOp, build: Build) -> None:
    active = pm.active()[op.index]
    row = layout.unpack_svc(pm.service_row(op.index, active))
    slot = row.slot
    entries = pm.route_entries()
    prefix = layout.U32.pack((op.index << 1) | slot)
    live = {k[4 : 4 + op.service.tag_length]: v for k, v in entries.items() if k[:4] == prefix}
    want = dict(op.service.routes)
    if op.kind == "route":
        (tag,) = [
            t
            for t in live.keys() | want.keys()
            if t not in want or t not in live or layout.route_port(live[t][0]) != want[t]
        ]
        key = layout.route_key(op.index, slot, tag)
        if tag in want:
            values = live.get(tag)
            if values is None:
                pm.write_routes([(key, layout.route_value(want[tag]))])
            else:  # change the port on every CPU, keep each CPU's counters
                port = layout.route_value(want[tag])[:2]
                m = pm.maps["mplex_routes"]
                raw = b"".join((port + v[2:]).ljust(m.stride, b"\0") for v in values)
                m.update(key, raw)
        else:
            pm.delete_routes([key])
        return
    target = slot if op.kind == "row" else 1 - slot
    if op.kind == "table":
        stale = [k for k in entries if k[:4] == layout.U32.pack((op.index << 1) | target)]
        pm.delete_routes(stale)
        pm.write_routes(_route_values(pm, op, target, entries, slot))
        fault_point("after-routes")
    svc = next(s for s in build.services if s.index == op.index)
    pm.write_service_row(op.index, 1 - active, svc.value(build.max_windows, slot=target))
    pm.set_active(op.index, 1 - active)  # the switch: one element, atomic
    fault_point("after-flip")
    if op.kind == "table":
        pm.delete_routes([k for k in entries if k[:4] == prefix])


def _cleanup(pm: ProgramMaps) -> None:
    active = pm.active()
    live_prefixes = set()
    for index in range(len(pm.service_info())):
        row = layout.unpack_svc(pm.service_row(index, active[index]))
        live_prefixes.add(layout.U32.pack((index << 1) | row.slot))
    stray = [k for k in pm.route_entries() if k[:4] not in live_prefixes]
    pm.delete_routes(stray)


def _update_maps(ip: InterfacePlan, build: Build, live: InterfaceState) -> None:
    assert live.program is not None
    pm = ProgramMaps.open(live.prog_id)
    if pm is None:
        raise KernelError(f"{ip.name}: program {live.prog_id} vanished during apply; re-run")
    try:
        if ip.cleanup:
            _cleanup(pm)
        for op in ip.service_ops:
            _service_op(pm, op, build)
        fault_point("before-meta")
        pm.write_meta(build, live.program.seq + 1, _now_ns())
    finally:
        pm.close()


def detach_interface(live: InterfaceState) -> None:
    """Detach exactly the program we saw (expected fd): never one that raced in since."""
    fd = _prog_fd(live.prog_id, live.name)
    try:
        netlink.detach(_link(live.name), expected_fd=fd)
    finally:
        os.close(fd)


def execute(p: Plan, build: Build, live: LiveState) -> Outcome:
    out = Outcome()
    for ip in p.interfaces:
        if ip.empty:
            continue
        state = live.interfaces[ip.name]
        if ip.program_action == "detach":
            detach_interface(state)
        elif ip.program_action:
            _install(ip, build, state, out)
        else:
            _update_maps(ip, build, state)
    return out
