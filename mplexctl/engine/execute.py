"""Stage 6: carry out a Plan. Ordered so that a crash at any point leaves a state the next
apply converges from, and the previous configuration stays in force until a switch."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mplexctl.backend import bpfsys, netlink
from mplexctl.backend.host import fault_point
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.engine.plan import InterfacePlan, Plan, ServiceOp
from mplexctl.engine.state import InterfaceState, LiveState
from mplexctl.errors import HostError, KernelError

if TYPE_CHECKING:
    from mplexctl.backend.loader import Loaded


@dataclass
class Outcome:
    notes: list[str] = field(default_factory=list)
    compiles: int = 0


@dataclass(frozen=True)
class Stamp:
    """What the metadata of every program touched by this apply records."""

    source: str  # digest of the config file (and mplexctl) this generation came from
    content: str  # digest of the desired services and routes


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


@dataclass
class _Prepared:
    """A new program, loaded and filled but not attached; and the one it will replace."""

    plan: InterfacePlan
    live: InterfaceState
    loaded: Loaded  # backend.loader (imported when a program is compiled)
    old_fd: int | None  # held open so a rollback can put the old program back


Undo = Callable[[], None]


def _prepare(
    ip: InterfacePlan, build: Build, live: InterfaceState, out: Outcome, stamp: Stamp
) -> _Prepared:
    """Compile, load and fill: everything that can fail before the host is touched."""
    from mplexctl.backend.loader import compile_and_load  # bcc and friends: only to compile

    loaded = compile_and_load(build)
    out.compiles += 1
    fault_point("after-load")
    seq = live.program.seq + 1 if live.program else 1
    pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
    pm.fill(build, seq, _now_ns(), stamp.source, stamp.content)
    fault_point("after-fill")
    old = _prog_fd(live.prog_id, ip.name) if live.prog_id else None
    return _Prepared(ip, live, loaded, old)


def _commit(p: _Prepared, out: Outcome, undo: list[Undo]) -> None:
    """Attach a prepared program: plain attach, atomic replace, or detach + attach."""
    ip, link, new_fd = p.plan, _link(p.plan.name), p.loaded.prog_fd
    if ip.program_action == "attach":
        _attach_mode(link, new_fd, ip.mode, out)
        undo.append(lambda: netlink.detach(_link(ip.name), expected_fd=new_fd))
    elif ip.program_action == "mode-change":
        assert p.old_fd is not None
        old_fd, old_mode = p.old_fd, link.mode or "native"
        netlink.detach(link, expected_fd=old_fd)
        undo.append(lambda: netlink.attach(_link(ip.name), old_fd, old_mode))
        _attach_mode(_link(ip.name), new_fd, ip.mode, out)
        undo.append(lambda: netlink.detach(_link(ip.name), expected_fd=new_fd))
    else:  # swap, replace-foreign: atomic; the old program stays in force until the switch
        assert p.old_fd is not None
        old_fd = p.old_fd
        mode = link.mode if link.mode in ("native", "generic") else "native"
        netlink.attach(link, new_fd, mode, expected_fd=old_fd)
        undo.append(lambda: netlink.attach(_link(ip.name), old_fd, mode, expected_fd=new_fd))
    fault_point("after-attach")


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


def _service_op(pm: ProgramMaps, op: ServiceOp, build: Build) -> None:
    active = pm.active()[op.index]
    slot = layout.unpack_svc(pm.service_row(op.index, active)).slot
    if op.kind == "route":  # one element, in place: no dump of the route map
        (tag,) = op.tags
        key = layout.route_key(op.index, slot, tag)
        want = op.service.routes
        if tag in want:
            values = pm.route_values(key)
            new = layout.route_value(want[tag])
            # A changed port keeps each CPU's counters.
            pm.write_routes([(key, new if values is None else [new[:2] + v[2:] for v in values])])
        else:
            pm.delete_routes([key])
        return
    target = slot if op.kind == "row" else 1 - slot
    dump = pm.route_dump() if op.kind == "table" else None
    if dump is not None:  # the new table under the other slot; kept tags keep their counters
        pm.delete_prefix(dump, (op.index << 1) | target)  # stale: an interrupted apply
        # A tag keeps its counters unless tag.length changed (then every route is a new one).
        same_tags = op.live.tag_length == op.service.tag_length
        keep = dump if same_tags else None
        pm.write_table(op.index, target, op.service.routes, keep=keep, keep_slot=slot)
        fault_point("after-routes")
    pm.write_service_row(op.index, 1 - active, op.service.value(build.max_windows, slot=target))
    pm.set_active(op.index, 1 - active)  # the switch: one element, atomic
    fault_point("after-flip")
    if dump is not None:
        pm.delete_prefix(dump, (op.index << 1) | slot)


def _cleanup(pm: ProgramMaps) -> None:
    """Delete route entries outside every service's live slot (an interrupted apply)."""
    active = pm.active()
    live_prefixes = set()
    for index in range(len(pm.service_info())):
        row = layout.unpack_svc(pm.service_row(index, active[index]))
        live_prefixes.add((index << 1) | row.slot)
    dump = pm.route_dump()
    for prefix in dump.groups.keys() - live_prefixes:
        pm.delete_prefix(dump, prefix)


def _update_maps(ip: InterfacePlan, build: Build, live: InterfaceState, stamp: Stamp) -> None:
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
        pm.write_meta(build, live.program.seq + 1, _now_ns(), stamp.source, stamp.content)
    finally:
        pm.close()


def detach_interface(live: InterfaceState) -> None:
    """Detach exactly the program we saw (expected fd): never one that raced in since."""
    fd = _prog_fd(live.prog_id, live.name)
    try:
        netlink.detach(_link(live.name), expected_fd=fd)
    finally:
        os.close(fd)


def execute(p: Plan, build: Build, live: LiveState, stamp: Stamp) -> Outcome:
    """Prepare every new program first (compile, verifier, map fill: nothing touched yet),
    then attach them, then update maps in place, then detach. If a step fails, the attach
    steps already taken are undone, so the previous configuration stays in force."""
    out = Outcome()
    todo = [ip for ip in p.interfaces if not ip.empty]
    installs = [ip for ip in todo if ip.program_action not in (None, "detach")]
    prepared: list[_Prepared] = []
    undo: list[Undo] = []
    try:
        for ip in installs:
            prepared.append(_prepare(ip, build, live.interfaces[ip.name], out, stamp))
        try:
            for prep in sorted(prepared, key=lambda x: x.plan.program_action != "attach"):
                _commit(prep, out, undo)
        except Exception:
            _rollback(undo, out)
            raise
        for ip in todo:
            if ip.program_action is None:
                _update_maps(ip, build, live.interfaces[ip.name], stamp)
        for ip in todo:
            if ip.program_action == "detach":
                detach_interface(live.interfaces[ip.name])
    finally:
        for prep in prepared:
            prep.loaded.close()
            if prep.old_fd is not None:
                os.close(prep.old_fd)
    return out


def _rollback(undo: list[Undo], out: Outcome) -> None:
    for step in reversed(undo):
        try:
            step()
        except Exception as exc:  # keep undoing the rest; the next apply converges
            out.notes.append(f"rollback step failed: {exc}")
