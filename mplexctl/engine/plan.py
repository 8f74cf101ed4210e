"""Stage 5: the one planner. Desired (Build) vs live (LiveState) -> Plan. Pure: no I/O.

diff, apply --check, apply and the Ansible module's check mode all call plan(); an apply is
verified when re-probing and re-planning gives an empty plan.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mplexctl import constants as C
from mplexctl.compiler.build import Build, ServiceEntry
from mplexctl.config.model import Interface, tag_text
from mplexctl.engine.state import (
    InterfaceState,
    LiveState,
    ProgramState,
    desired_services,
)

VIRTUAL_PROG_ID = -1  # the program of a host that exists only on paper (`diff OLD NEW`)

IMPACT = {
    "attach": "attach",
    "swap": "program swap (counters restart)",
    "replace-foreign": "program swap (replaces a foreign program)",
    "mode-change": "detach + attach (new XDP mode)",
    "detach": "detach",
    "hook-change": "attach at the new hook, then detach from the old one",
    "reply-path": "attach / replace / detach at tc egress",
    "row": "map update (service row swap)",
    "route": "map update (one entry, in place)",
    "table": "map update (route table swap)",
    "cleanup": "map update (remove stray entries)",
    "metadata": "map update (metadata)",
}


@dataclass(frozen=True)
class Change:
    """One readable line of a plan."""

    interface: str
    action: str
    impact: str
    detail: str
    service: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "action": self.action,
            "impact": self.impact,
            "detail": self.detail,
            "service": self.service,
        }


@dataclass(frozen=True)
class ServiceOp:
    """An executable map change of one service of a program that stays attached."""

    index: int
    kind: str  # row | route | table
    service: ServiceEntry  # desired
    live: ServiceEntry  # as probed
    tags: tuple[bytes, ...] = ()  # tags whose route changes


@dataclass(frozen=True)
class InterfacePlan:
    """What happens to one interface's attachment: the program itself is shared."""

    name: str
    program_action: str | None  # attach | swap | replace-foreign | mode-change | detach
    mode: str  # desired xdp_mode (auto | native | generic)
    hook: str = "xdp"  # the hook program_action is about (xdp | tc)
    drop: str | None = None  # mplex's program at the other hook (xdp | tc), detached after
    egress: str | None = None  # the reply path at tc egress: attach | swap | detach

    @property
    def empty(self) -> bool:
        return not (self.program_action or self.drop or self.egress)


@dataclass(frozen=True)
class ProgramPlan:
    """The one program of the namespace: an existing one (its maps written once, whatever
    the number of interfaces) or a new one (compiled once, attached to every interface)."""

    prog_id: int  # 0: a new program
    label: str  # the interfaces it serves, for readable lines
    service_ops: tuple[ServiceOp, ...] = ()
    cleanup: bool = False  # stray route entries or a half-written row
    metadata: bool = False
    slots: tuple[tuple[int, int], ...] = ()  # (ifindex, counter slot) written before attach
    unslot: tuple[int, ...] = ()  # ifindexes whose counter slot is cleared (after detach)

    @property
    def new(self) -> bool:
        return self.prog_id == 0

    @property
    def empty(self) -> bool:
        return not (
            self.new
            or self.service_ops
            or self.cleanup
            or self.metadata
            or self.slots
            or self.unslot
        )


@dataclass(frozen=True)
class Plan:
    generation: str
    changes: tuple[Change, ...] = ()
    interfaces: tuple[InterfacePlan, ...] = ()
    refused: tuple[InterfaceState, ...] = ()  # foreign programs we may not touch
    missing: tuple[str, ...] = ()  # interfaces in the file but not on the host
    program: ProgramPlan | None = None  # None: no interface to serve
    notes: tuple[str, ...] = ()  # what the plan keeps as it is, and why
    warnings: tuple[str, ...] = ()  # what works, but not as the operator may expect

    @property
    def empty(self) -> bool:
        program_empty = self.program is None or self.program.empty
        return program_empty and all(p.empty for p in self.interfaces)

    def as_list(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.changes]


# --- readable differences between two service sets ------------------------------------------
def _q(tag: bytes) -> str:
    return f'"{tag_text(tag)}"'


def _windows(ws: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{lo}..{hi}" for lo, hi in ws)


def service_differences(
    old: ServiceEntry | None, new: ServiceEntry | None, tags: list[bytes] | None = None
) -> list[str]:
    """Readable differences; `tags` are changed_tags(old, new) when the caller has them."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [f"service {new.name}: added ({new.protocol}/{new.port}, {len(new.routes)} routes)"]
    if new is None:
        return [f"service {old.name}: removed ({old.protocol}/{old.port})"]
    name, out = new.name, []
    if (old.protocol, old.port) != (new.protocol, new.port):
        out.append(f"service {name}: {old.protocol}/{old.port} -> {new.protocol}/{new.port}")
    if old.windows != new.windows:
        out.append(f"service {name}: windows {_windows(old.windows)} -> {_windows(new.windows)}")
    if (old.tag_offset, old.tag_length) != (new.tag_offset, new.tag_length):
        out.append(
            f"service {name}: tag offset {old.tag_offset} length {old.tag_length} -> "
            f"offset {new.tag_offset} length {new.tag_length}"
        )
    if old.unmatched != new.unmatched:
        out.append(f"service {name}: unmatched {old.unmatched} -> {new.unmatched}")
    before, after = old.routes, new.routes
    for tag in changed_tags(old, new) if tags is None else tags:
        a, b = before.get(tag), after.get(tag)
        if a is None:
            out.append(f"service {name}: route {_q(tag)} -> {b} added")
        elif b is None:
            out.append(f"service {name}: route {_q(tag)} -> {a} removed")
        else:
            out.append(f"service {name}: route {_q(tag)}: {a} -> {b}")
    return out


def changed_tags(old: ServiceEntry, new: ServiceEntry) -> list[bytes]:
    """Tags whose route is added, removed or re-targeted from old to new (sorted)."""
    if old.routes is new.routes or old.routes == new.routes:
        return []
    # Set operations on dict item views run in C, whatever the size of the tables.
    return sorted({tag for tag, _port in old.routes.items() ^ new.routes.items()})


# --- the planner --------------------------------------------------------------------------
@dataclass
class _Builder:
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, iface: str, action: str, detail: str, service: str | None = None) -> None:
        self.changes.append(Change(iface, action, IMPACT[action], detail, service))


def _mode_mismatch(desired: str, live: str | None) -> bool:
    return desired != "auto" and live != desired


def _content_changes(
    b: _Builder,
    iface: str,
    action: str,
    old: tuple[ServiceEntry, ...],
    new: tuple[ServiceEntry, ...],
) -> None:
    by_old = {s.name: s for s in old}
    by_new = {s.name: s for s in new}
    for name in sorted(by_old.keys() | by_new.keys()):
        for line in service_differences(by_old.get(name), by_new.get(name)):
            b.add(iface, action, line, name)


def _map_changes(
    b: _Builder, label: str, prog: ProgramState, desired: tuple[ServiceEntry, ...], build: Build
) -> tuple[tuple[ServiceOp, ...], bool, bool]:
    """(service ops, cleanup, metadata) that bring the maps of `prog` to `build`."""
    ops = []
    for want in desired:
        have = prog.services[want.index]
        tags = changed_tags(have, want)
        lines = service_differences(have, want, tags)
        if not lines:
            continue
        same_row = have.behaviour() == want.behaviour()
        kind = "route" if same_row and len(tags) == 1 else ("row" if not tags else "table")
        ops.append(ServiceOp(want.index, kind, want, have, tuple(tags)))
        for line in lines:
            b.add(label, kind, line, want.name)
    cleanup = prog.stray_routes > 0 or not prog.rows_in_sync
    if cleanup:
        b.add(label, "cleanup", f"{prog.stray_routes} stray route entries (an interrupted apply)")
    return tuple(ops), cleanup, prog.build_digest != build.digest


def _needed_entries(build: Build) -> set[str]:
    """Entries of the program the file's interfaces attach: a live generation without one
    of them attached anywhere cannot provide it (an unattached program is gone)."""
    hooks = {i.hook for i in build.config.interfaces}
    out = {C.PROG_NAME} if "xdp" in hooks else set()
    if "tc" in hooks:
        out.add(C.PROG_TC_IN)
    if build.config.restores and build.config.interfaces:
        out.add(C.PROG_TC_OUT)
    return out


def _target(build: Build, live: LiveState, wanted: list[str]) -> ProgramState | None:
    """The live program every interface should run: one of this layout compiled from the
    same program text (after a half-finished swap, the one on most interfaces), or None."""
    needed = _needed_entries(build)
    fits = [
        p
        for p in live.programs().values()
        if p.layout == C.LAYOUT_VERSION
        and p.program_digest == build.program_digest
        and needed <= p.progs.keys()
    ]

    def score(p: ProgramState) -> tuple[int, int, int]:
        on = sum(1 for i in live.carriers(p.prog_id) if i.name in wanted)
        return (on, p.seq, p.prog_id)

    return max(fits, key=score, default=None)


def _slots(
    target: ProgramState | None, ifindexes: list[int]
) -> tuple[dict[int, int], tuple[int, ...]]:
    """(ifindex -> counter slot to write, ifindexes to clear): an interface keeps its slot
    (and its counters); a new one takes the lowest slot nobody holds."""
    have = dict(target.if_slots) if target is not None else {}
    capacity = target.slot_capacity if target is not None else C.if_slots(len(ifindexes))
    stale = tuple(sorted(i for i in have if i not in ifindexes))
    taken = set(have.values())
    free = (s for s in range(1, capacity) if s not in taken)
    reuse = iter(have[i] for i in stale)  # only when every slot is held (never in practice)
    write = {}
    for index in ifindexes:
        if index not in have:
            write[index] = next(free, None) or next(reuse, C.IF_SLOT_NONE)
    return write, stale


def _swap_reason(prog: ProgramState, build: Build) -> str:
    """Why the program is replaced, in the config's words."""
    reasons = []
    desired = desired_services(build)
    if [(s.name, s.protocol, s.port) for s in prog.services] != [
        (s.name, s.protocol, s.port) for s in desired
    ]:
        reasons.append("services added, removed or moved to another protocol/port")
    want = (build.config.limits.routes, build.config.limits.windows)
    if prog.map_limits is not None:
        for key, have, new in zip(("routes", "windows"), prog.map_limits, want, strict=True):
            if have != new:
                reasons.append(f"limits.{key} {have} -> {new}")
    had_restore = any(s.reply == "restore" for s in prog.services)
    if had_restore != build.config.restores:
        reasons.append(f"reply: restore {'off' if had_restore else 'on'} (reply-path code)")
    had_tc = C.PROG_TC_IN in prog.progs
    if had_tc != ("tc" in build.config.hooks):
        reasons.append(f"{'no' if had_tc else 'an'} interface at hook tc")
    missing = _needed_entries(build) - prog.progs.keys()
    if missing and not reasons:
        reasons.append(f"entry {', '.join(sorted(missing))} attached nowhere (a new load)")
    if not reasons:
        reasons.append("the program's source changed (another mplexctl version)")
    return "; ".join(reasons)


def _xdp_interface(
    b: _Builder,
    iface: Interface,
    live: InterfaceState,
    target: ProgramState | None,
    build: Build,
    force: bool,
) -> InterfacePlan | InterfaceState:
    name, prog = iface.name, live.program
    if not live.up:
        b.warnings.append(
            f"{name} is down: mplex runs on it, but it receives nothing until it is up "
            f"(ip link set {name} up)"
        )
    if iface.xdp_mode == "auto" and live.mode == "generic" and prog is not None:
        b.notes.append(
            f"{name}: xdp_mode auto keeps the running generic mode (auto picks native only "
            "when it attaches; detach, then apply, to try native again)"
        )
    if live.prog_id == 0:
        b.add(
            name, "attach", f"attach mplex in {iface.xdp_mode} mode (generation {build.generation})"
        )
        return InterfacePlan(name, "attach", iface.xdp_mode)
    if prog is None:
        if not force:
            return live
        b.add(
            name,
            "replace-foreign",
            f"replace foreign XDP program {live.prog_name} "
            f"(id {live.prog_id}) with mplex (--force)",
        )
        return InterfacePlan(name, "replace-foreign", iface.xdp_mode)
    if _mode_mismatch(iface.xdp_mode, live.mode):
        b.add(name, "mode-change", f"XDP mode {live.mode} -> {iface.xdp_mode}")
        return InterfacePlan(name, "mode-change", iface.xdp_mode)
    if target is None or prog.prog_id != target.prog_id:
        if target is not None:  # e.g. a swap interrupted after some interfaces switched
            why = "joins the program the other interfaces run"
        elif prog.layout != C.LAYOUT_VERSION:
            why = "previous release's per-interface program"
        else:
            why = _swap_reason(prog, build)
        new = build.program_digest[:12] if target is None else f"id {target.prog_id}"
        b.add(name, "swap", f"program {prog.program_digest[:12]} -> {new} ({why})")
        return InterfacePlan(name, "swap", iface.xdp_mode)
    return InterfacePlan(name, None, iface.xdp_mode)


def _tc_interface(
    b: _Builder, iface: Interface, live: InterfaceState, target: ProgramState | None, build: Build
) -> InterfacePlan:
    """hook: tc. Other programs at the tcx hook and a foreign XDP program stay as they are."""
    name, prog = iface.name, live.tc_program
    action: str | None = None
    if prog is None:
        b.add(name, "attach", f"attach mplex at tc ingress (generation {build.generation})")
        action = "attach"
    elif target is None or prog.prog_id != target.prog_id:
        new = build.program_digest[:12] if target is None else f"id {target.prog_id}"
        why = "joins the program the other interfaces run" if target else _swap_reason(prog, build)
        b.add(name, "swap", f"tc program {prog.program_digest[:12]} -> {new} ({why})")
        action = "swap"
    return InterfacePlan(name, action, iface.xdp_mode, hook="tc")


def _interface(
    b: _Builder,
    iface: Interface,
    live: InterfaceState,
    target: ProgramState | None,
    build: Build,
    force: bool,
) -> InterfacePlan | InterfaceState:
    """One interface of the file: its ingress hook, mplex's program at the other hook (a
    hook change), and the reply path at tc egress."""
    if iface.hook == "tc":
        result: InterfacePlan | InterfaceState = _tc_interface(b, iface, live, target, build)
        other = "xdp" if live.program is not None else None
        if other:
            b.add(iface.name, "hook-change", f"detach mplex XDP (id {live.prog_id}): hook tc")
    else:
        result = _xdp_interface(b, iface, live, target, build, force)
        other = "tc" if live.tc_program is not None else None
        if other:
            b.add(iface.name, "hook-change", f"detach mplex at tc ingress (id {live.tc_id})")
    if isinstance(result, InterfaceState):
        return result
    egress = _egress(b, iface.name, live, target, build)
    return dataclasses.replace(result, drop=other, egress=egress)


def _egress(
    b: _Builder, name: str, live: InterfaceState, target: ProgramState | None, build: Build
) -> str | None:
    """The reply path: mplex's egress program on every interface of the file while a
    service has reply: restore."""
    have = live.egress_program
    if build.config.restores:
        if have is None:
            b.add(name, "reply-path", "attach the reply path at tc egress (reply: restore)")
            return "attach"
        if target is None or have.prog_id != target.prog_id:
            b.add(name, "reply-path", f"replace the reply path at tc egress (id {live.egress_id})")
            return "swap"
        return None
    if live.egress_id:
        b.add(name, "reply-path", "detach the reply path at tc egress (no reply: restore left)")
        return "detach"
    return None


def plan(build: Build, live: LiveState, *, force: bool = False) -> Plan:
    """What it takes to make `live` equal to `build` (the file is the whole desired state):
    one program for every interface of the file, each attached in its own xdp_mode."""
    b = _Builder()
    present = [i for i in build.config.interfaces if i.name in live.interfaces]
    missing = tuple(i.name for i in build.config.interfaces if i.name not in live.interfaces)
    target = _target(build, live, [i.name for i in present])
    plans: list[InterfacePlan] = []
    refused: list[InterfaceState] = []
    for iface in present:
        result = _interface(b, iface, live.interfaces[iface.name], target, build, force)
        if isinstance(result, InterfaceState):
            refused.append(result)
        else:
            plans.append(result)
    wanted = {i.name for i in build.config.interfaces}
    leaving = [s for s in live.mplex_interfaces() if s.name not in wanted]
    program = None
    if plans or (target is not None and target.if_slots):
        program = _program(b, build, live, target, plans, {s.index for s in leaving})
    for state in leaving:
        which = "" if state.prog_id == VIRTUAL_PROG_ID else f" (id {state.prog_id})"
        b.add(state.name, "detach", f"detach mplex{which}: not in the file")
        plans.append(InterfacePlan(state.name, "detach", "auto"))
    return Plan(
        build.generation,
        tuple(b.changes),
        tuple(plans),
        tuple(refused),
        missing,
        program,
        tuple(b.notes),
        tuple(b.warnings),
    )


def _program(
    b: _Builder,
    build: Build,
    live: LiveState,
    target: ProgramState | None,
    served: list[InterfacePlan],
    leaving: set[int],
) -> ProgramPlan:
    """The shared program's part of the plan: compile a new one, or write the live one's
    maps once; and the counter slots of the interfaces it serves."""
    label = ",".join(p.name for p in served)
    desired = desired_services(build)
    index = {p.name: live.interfaces[p.name].index for p in served}
    write, stale = _slots(target, list(index.values()))
    if target is None:  # a new program: compiled once, filled, then attached everywhere
        olds = [live.interfaces[p.name].program for p in served]
        old = next((p for p in olds if p is not None), None)
        action = next((p.program_action for p in served if p.program_action), "attach")
        if action != "replace-foreign":  # a foreign program's content is unknown
            _content_changes(b, label, action, old.services if old else (), desired)
        return ProgramPlan(0, label, slots=tuple(write.items()))
    ops, cleanup, metadata = _map_changes(b, label, target, desired, build)
    on_target = {i.index for i in live.carriers(target.prog_id)}
    lost = [name for name, i in index.items() if i in write and i in on_target]
    for name in lost:
        b.add(label, "cleanup", f"interface {name}: no counter slot (maps edited by hand?)")
    gone = [i for i in stale if i not in leaving]
    if gone:
        b.add(label, "cleanup", f"{len(gone)} counter slot(s) of interfaces no longer served")
    if metadata and not (ops or cleanup or lost or gone):
        b.add(label, "metadata", f"generation {target.generation} -> {build.generation}")
    return ProgramPlan(target.prog_id, label, ops, cleanup, metadata, tuple(write.items()), stale)


def virtual_live(build: Build) -> LiveState:
    """The live state a host would have after applying `build` (for `diff OLD NEW`)."""
    services = desired_services(build)
    names = [i.name for i in build.config.interfaces]
    prog = ProgramState(
        prog_id=VIRTUAL_PROG_ID,
        program_digest=build.program_digest,
        build_digest=build.digest,
        seq=0,
        applied_ns=0,
        services=services,
        route_slot=tuple(0 for _ in services),
        stray_routes=0,
        rows_in_sync=True,
        if_slots=MappingProxyType({n + 1: n + 1 for n in range(len(names))}),
        slot_capacity=C.if_slots(len(names)),
        map_limits=(build.config.limits.routes, build.config.limits.windows),
    )
    prog = dataclasses.replace(
        prog, progs=MappingProxyType(dict.fromkeys(_needed_entries(build), VIRTUAL_PROG_ID))
    )
    egress = prog if build.config.restores else None
    out = {}
    for n, i in enumerate(build.config.interfaces):
        if i.hook == "tc":
            state = InterfaceState(i.name, n + 1, None, 0, tc_id=VIRTUAL_PROG_ID, tc_program=prog)
        else:
            state = InterfaceState(i.name, n + 1, i.xdp_mode, VIRTUAL_PROG_ID, C.PROG_NAME, prog)
        out[i.name] = dataclasses.replace(
            state, egress_id=VIRTUAL_PROG_ID if egress else 0, egress_program=egress
        )
    return LiveState(out)


def virtual_host(old: Build, new: Build) -> LiveState:
    """virtual_live(old) plus empty entries for interfaces only `new` names."""
    live = dict(virtual_live(old).interfaces)
    for i in new.config.interfaces:
        live.setdefault(i.name, InterfaceState(i.name, len(live) + 1, None, 0))
    return LiveState(live)
