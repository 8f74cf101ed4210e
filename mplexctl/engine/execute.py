"""Stage 6: carry out a Plan. Ordered so that a crash at any point leaves a state the next
apply converges from, and the previous configuration stays in force until a switch."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mplexctl import constants as C
from mplexctl.backend import bpfsys, netlink, tchook
from mplexctl.backend.host import fault_point
from mplexctl.backend.program import ProgramMaps
from mplexctl.backend.routes import tag_word
from mplexctl.backend.testrun import prove_in_kernel
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.engine.plan import InterfacePlan, Plan, ProgramPlan, ServiceOp
from mplexctl.engine.probe import tc_hooks
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
    """What the metadata of every program touched by this apply records for accel/noop.py
    (empty: nothing recorded)."""

    source: str = ""  # digest of the config file (and mplexctl) this generation came from
    content: str = ""  # digest of the desired services and routes


TC_DETACH_ROUNDS = 4  # mplex's program at a TC hook: once per way, and spare rounds


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
class _Program:
    """The program every interface will run: a new one (loaded and filled, not attached yet)
    or the live one; its fd stays open until the apply ends."""

    fd: int
    pm: ProgramMaps
    loaded: Loaded | None = None  # backend.loader (imported when a program is compiled)
    fds: dict[str, int] = field(default_factory=dict)  # entry name -> fd (XDP, TC in, out)

    def entry(self, name: str) -> int:
        fd = self.fds.get(name)
        if fd is None:  # the planner compiles anew when a needed entry is not live
            raise KernelError(f"program {self.pm.prog_id} has no {name} entry; re-run")
        return fd

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
        else:
            self.pm.close()
            for fd in self.fds.values():
                os.close(fd)


Undo = Callable[[], None]


def _prepare(
    pp: ProgramPlan, build: Build, live: LiveState, out: Outcome, stamp: Stamp
) -> _Program:
    """A new program: compile, load, fill and prove it (the file's expectations in
    BPF_PROG_TEST_RUN), once for every interface. Everything that can fail happens here,
    before the host is touched."""
    from mplexctl.backend.loader import compile_and_load  # bcc and friends: only to compile

    loaded = compile_and_load(build)
    out.compiles += 1
    fault_point("after-load")
    try:
        seq = 1 + max((p.seq for p in live.programs().values()), default=0)
        pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
        pm.fill(build, seq, _now_ns(), stamp.source, stamp.content, dict(pp.slots))
        fault_point("after-fill")
        prove_in_kernel(loaded.prog_fd, pm, build, pp.label)  # expect: holds, or no change
    except BaseException:
        loaded.close()  # not attached: the program and its maps go with the last fd
        raise
    return _Program(loaded.prog_fd, pm, loaded, dict(loaded.fds))


def _open_live(prog_id: int, label: str, live: LiveState) -> _Program:
    state = live.programs().get(prog_id)
    fds: dict[str, int] = {}
    try:
        for name, entry_id in state.progs.items() if state else ():
            fds[name] = _prog_fd(entry_id, label)
        pm = ProgramMaps.open(prog_id)
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    if pm is None:
        for fd in fds.values():
            os.close(fd)
        raise KernelError(f"{label}: program {prog_id} vanished during apply; re-run")
    return _Program(next(iter(fds.values()), -1), pm, fds=fds)


def _commit(
    ip: InterfacePlan,
    live: InterfaceState,
    prog: _Program,
    out: Outcome,
    undo: list[Undo],
    held: list[int],
) -> None:
    """One interface: its ingress hook, then mplex's program at the other hook (a hook
    change: the new one runs before the old one goes), then the reply path at tc egress."""
    if ip.program_action:
        if ip.hook == "tc":
            _tc_commit(live, "ingress", live.tc_id, ip.program_action, prog, undo, held)
        else:
            _xdp_commit(ip, live, prog.entry(C.PROG_NAME), out, undo, held)
    if ip.drop == "xdp":
        old_fd = _prog_fd(live.prog_id, live.name)
        held.append(old_fd)
        old_mode = live.mode if live.mode in ("native", "generic") else "native"
        netlink.detach(_link(live.name), expected_fd=old_fd)
        undo.append(lambda: netlink.attach(_link(live.name), old_fd, old_mode))
    elif ip.drop == "tc":
        _tc_commit(live, "ingress", live.tc_id, "detach", prog, undo, held)
    if ip.egress:
        _tc_commit(live, "egress", live.egress_id, ip.egress, prog, undo, held)
    fault_point("after-attach")


def _tc_commit(
    live: InterfaceState,
    direction: str,
    old_id: int,
    action: str,
    prog: _Program,
    undo: list[Undo],
    held: list[int],
) -> None:
    """attach | swap (atomic replace of exactly the program we saw) | detach, at one TC
    hook, where the live program is attached (tcx or clsact); each step leaves an undo."""
    entry = C.PROG_TC_IN if direction == "ingress" else C.PROG_TC_OUT
    index, name = live.index, live.name
    if action == "attach":
        new_fd = prog.entry(entry)
        via = tchook.preferred()
        tchook.attach(index, name, via, new_fd, direction)
        undo.append(lambda: tchook.detach(index, name, via, new_fd, direction))
        return
    old_fd = _prog_fd(old_id, name)  # held open so a rollback can put it back
    held.append(old_fd)
    old_via = live.tc_via if direction == "ingress" else live.egress_via
    if action == "detach":
        tchook.detach(index, name, old_via, old_fd, direction)
        undo.append(lambda: tchook.attach(index, name, old_via, old_fd, direction))
        return
    new_fd = prog.entry(entry)
    tchook.replace(index, name, old_via, old_fd, new_fd, direction)
    undo.append(lambda: tchook.replace(index, name, old_via, new_fd, old_fd, direction))


def _xdp_commit(
    ip: InterfacePlan,
    live: InterfaceState,
    new_fd: int,
    out: Outcome,
    undo: list[Undo],
    held: list[int],
) -> None:
    """Attach the shared program to one interface: plain attach, atomic replace of the
    program it runs (expected fd), or detach + attach in another mode."""
    link = _link(ip.name)
    if ip.program_action == "attach":
        _attach_mode(link, new_fd, ip.mode, out)
        undo.append(lambda: netlink.detach(_link(ip.name), expected_fd=new_fd))
        return
    old_fd = _prog_fd(live.prog_id, ip.name)  # held open so a rollback can put it back
    held.append(old_fd)
    if ip.program_action == "mode-change":
        old_mode = link.mode or "native"
        netlink.detach(link, expected_fd=old_fd)
        undo.append(lambda: netlink.attach(_link(ip.name), old_fd, old_mode))
        _attach_mode(_link(ip.name), new_fd, ip.mode, out)
        undo.append(lambda: netlink.detach(_link(ip.name), expected_fd=new_fd))
    else:  # swap, replace-foreign: atomic; the old program stays in force until the switch
        mode = link.mode if link.mode in ("native", "generic") else "native"
        netlink.attach(link, new_fd, mode, expected_fd=old_fd)
        undo.append(lambda: netlink.attach(_link(ip.name), old_fd, mode, expected_fd=new_fd))


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
    active, row = pm.live_row(op.index)
    slot = row.slot
    if op.kind == "route" and (pm.hashed or _route_in_place(pm, op, build, active, row)):
        if pm.hashed:  # one element, in place: no dump of the route map
            _route_hashed(pm, op, slot)
        return
    kind = "table" if op.kind == "route" else op.kind  # no slot within the probe bound
    target = slot if kind == "row" else 1 - slot
    dump = pm.route_dump() if kind == "table" else None
    seed, probes = row.seed, row.probes
    if dump is not None:  # the new table under the other slot; kept tags keep their counters
        pm.delete_prefix(dump, layout.route_prefix(op.index, target))  # stale: interrupted
        if not pm.hashed:
            dump = pm.route_dump()
        # A tag keeps its counters unless tag.length changed (then every route is a new one).
        same_tags = op.live.tag_length == op.service.tag_length
        keep = dump if same_tags else None
        seed, probes = pm.write_table(
            op.index, target, op.service.routes, keep=keep, keep_slot=slot
        )
        fault_point("after-routes")
    value = op.service.value(build.max_windows, target, probes, seed, pm.hashed)
    pm.write_service_row(op.index, 1 - active, value)
    pm.set_active(op.index, 1 - active)  # the switch: one element, atomic
    fault_point("after-flip")
    if dump is not None:
        pm.delete_prefix(dump, layout.route_prefix(op.index, slot))


def _route_hashed(pm: ProgramMaps, op: ServiceOp, slot: int) -> None:
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


def _route_in_place(
    pm: ProgramMaps, op: ServiceOp, build: Build, active: int, row: layout.SvcRow
) -> bool:
    """One route added, re-targeted or deleted in place (layout 3): a re-target is one
    8-byte store, a delete a tombstone, an add a free slot within ROUTE_PROBES_MAX of its
    home (the row's probe bound raised first, by a row flip, when the slot lies beyond it).
    False when no slot is free within the bound: the caller swaps the table instead."""
    (tag,) = op.tags
    t = pm.slots
    prefix = layout.route_prefix(op.index, row.slot)
    key, word = layout.route_slot_key(prefix), tag_word(tag)
    at = t.find(key, word, row.seed)
    port = op.service.routes.get(tag)
    if at is not None:
        if port is None:
            t.tombstone([at])
        else:
            t.retarget(at, port)
        return True
    if port is None:
        return True  # already gone
    spot = t.place_one(word, row.seed)
    if spot is None:
        return False
    where, d = spot
    if d + 1 > row.probes:  # a longer probe bound first: a whole new row, then the switch
        value = op.service.value(build.max_windows, row.slot, d + 1, row.seed, False)
        pm.write_service_row(op.index, 1 - active, value)
        pm.set_active(op.index, 1 - active)
    t.add(key, where, word, port)
    return True


def _cleanup(pm: ProgramMaps) -> None:
    """Delete route entries outside every service's live slot (an interrupted apply)."""
    active = pm.active()
    live_prefixes = set()
    for index in range(len(pm.service_info())):
        row = pm.svc_row(index, active[index])
        live_prefixes.add(layout.route_prefix(index, row.slot))
    dump = pm.route_dump()
    for prefix in dump.groups.keys() - live_prefixes:
        pm.delete_prefix(dump, prefix)


def _update_maps(
    pp: ProgramPlan, prog: _Program, build: Build, live: LiveState, stamp: Stamp
) -> None:
    """In-place changes of the live program's maps: written once, seen by every interface."""
    state = live.programs()[pp.prog_id]
    if pp.cleanup:
        _cleanup(prog.pm)
    for op in pp.service_ops:
        _service_op(prog.pm, op, build)
    fault_point("before-meta")
    prog.pm.write_meta(build, state.seq + 1, _now_ns(), stamp.source, stamp.content)


def detach_interface(live: InterfaceState) -> None:
    """Detach exactly the programs of mplex we saw (expected fd): never one that raced in
    since, never another program of a TC hook; then free the interface's counter slot in
    its generation (when the generation is still attached somewhere)."""
    if live.program is not None:
        fd = _prog_fd(live.prog_id, live.name)
        try:
            netlink.detach(_link(live.name), expected_fd=fd)
        finally:
            os.close(fd)
    for direction, prog_id, via in (
        ("ingress", live.tc_id, live.tc_via),
        ("egress", live.egress_id, live.egress_via),
    ):
        _detach_tc(live, direction, prog_id, via)
    fault_point("after-detach")
    for gen in live.generations():
        if live.index in gen.if_slots:
            pm = ProgramMaps.open(gen.prog_id)
            if pm is not None:  # None: the program went with its last interface
                try:
                    pm.clear_if_slot(live.index)
                finally:
                    pm.close()
            break


def _detach_tc(live: InterfaceState, direction: str, prog_id: int, via: str) -> None:
    """Detach mplex's program at one TC hook; then look again: mplex's program attached
    there a second time the other way (tcx and clsact) goes too (never another program)."""
    for _ in range(TC_DETACH_ROUNDS):
        if not prog_id:
            return
        fd = _prog_fd(prog_id, live.name)
        try:
            tchook.detach(live.index, live.name, via, fd, direction)
        finally:
            os.close(fd)
        again = tc_hooks(live.index)
        prog_id, via = (
            (again.ingress, again.ingress_via)
            if direction == "ingress"
            else (again.egress, again.egress_via)
        )


def execute(p: Plan, build: Build, live: LiveState, stamp: Stamp) -> Outcome:
    """Prepare the new program when there is one (compile, verifier, map fill: nothing
    touched yet), give the interfaces about to be attached their counter slots, then attach
    every interface (each switch atomic, one after another), then update the maps in place
    (once), then detach. If an attach fails, the attach steps already taken are undone, so
    the previous configuration stays in force."""
    out = Outcome()
    pp = p.program
    installs = [ip for ip in p.interfaces if ip.program_action != "detach" and not ip.empty]
    prog: _Program | None = None
    undo: list[Undo] = []
    held: list[int] = []  # fds of replaced programs, kept for a rollback
    if any(ip.hook == "tc" or ip.egress for ip in installs):
        tchook.preferred()  # a bad MPLEXCTL_TC_ATTACH is refused before anything changes
    for ip in installs:  # so is a reply path the interface cannot take (before the compile)
        if ip.egress == "attach":
            tchook.check_attach(live.interfaces[ip.name].index, ip.name, "egress")
    try:
        if pp is not None and pp.new:
            prog = _prepare(pp, build, live, out, stamp)
        elif pp is not None:
            prog = _open_live(pp.prog_id, pp.label, live)
        assert prog is not None or not installs
        try:
            if pp is not None and prog is not None and not pp.new:
                _write_slots(prog.pm, pp.slots, undo)
            for ip in sorted(installs, key=lambda x: x.program_action != "attach"):
                assert prog is not None
                _commit(ip, live.interfaces[ip.name], prog, out, undo, held)
        except Exception:
            _rollback(undo, out)
            raise
        if pp is not None and prog is not None and not pp.new and not pp.empty:
            _update_maps(pp, prog, build, live, stamp)
        for ip in p.interfaces:
            if ip.program_action == "detach":
                detach_interface(live.interfaces[ip.name])
        if pp is not None and prog is not None:
            for ifindex in pp.unslot:
                prog.pm.clear_if_slot(ifindex)
    finally:
        for fd in held:
            os.close(fd)
        if prog is not None:
            prog.close()
    return out


def _write_slots(pm: ProgramMaps, slots: tuple[tuple[int, int], ...], undo: list[Undo]) -> None:
    """Counter slots (from zero) for the interfaces about to run the live program."""
    for ifindex, slot in slots:
        pm.set_if_slot(ifindex, slot)
        undo.append(functools.partial(pm.clear_if_slot, ifindex))
    if slots:
        fault_point("after-slots")


def _rollback(undo: list[Undo], out: Outcome) -> None:
    for step in reversed(undo):
        try:
            step()
        except Exception as exc:  # keep undoing the rest; the next apply converges
            out.notes.append(f"rollback step failed: {exc}")
