"""Stage 5: the one planner. Desired (Build) vs live (LiveState) -> Plan. Pure: no I/O.

diff, apply --check, apply and the Ansible module's check mode all call plan(); an apply is
verified when re-probing and re-planning gives an empty plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mplexctl.compiler.build import Build
from mplexctl.config.model import Interface, tag_text
from mplexctl.engine.state import (
    InterfaceState,
    LiveState,
    ProgramState,
    ServiceState,
    desired_services,
)

IMPACT = {
    "attach": "attach",
    "swap": "program swap",
    "replace-foreign": "program swap (replaces a foreign program)",
    "mode-change": "detach + attach (new XDP mode)",
    "detach": "detach",
    "row": "map update",
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
    service: ServiceState  # desired
    live: ServiceState  # as probed
    tags: tuple[bytes, ...] = ()  # tags whose route changes


@dataclass(frozen=True)
class InterfacePlan:
    name: str
    program_action: str | None  # attach | swap | replace-foreign | mode-change | detach
    mode: str  # desired xdp_mode (auto | native | generic)
    service_ops: tuple[ServiceOp, ...] = ()
    cleanup: bool = False
    metadata: bool = False

    @property
    def empty(self) -> bool:
        return not (self.program_action or self.service_ops or self.cleanup or self.metadata)


@dataclass(frozen=True)
class Plan:
    generation: str
    changes: tuple[Change, ...] = ()
    interfaces: tuple[InterfacePlan, ...] = ()
    refused: tuple[InterfaceState, ...] = ()  # foreign programs we may not touch
    missing: tuple[str, ...] = ()  # interfaces in the file but not on the host

    @property
    def empty(self) -> bool:
        return all(p.empty for p in self.interfaces)

    def as_list(self) -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.changes]


# --- readable differences between two service sets ------------------------------------------
def _q(tag: bytes) -> str:
    return f'"{tag_text(tag)}"'


def _windows(ws: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{lo}..{hi}" for lo, hi in ws)


def service_differences(
    old: ServiceState | None, new: ServiceState | None, tags: list[bytes] | None = None
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


def changed_tags(old: ServiceState, new: ServiceState) -> list[bytes]:
    """Tags whose route is added, removed or re-targeted from old to new (sorted)."""
    if old.routes is new.routes or old.routes == new.routes:
        return []
    # Set operations on dict item views run in C: ~7 ms for 65,536 routes.
    return sorted({tag for tag, _port in old.routes.items() ^ new.routes.items()})


# --- the planner --------------------------------------------------------------------------
@dataclass
class _Builder:
    changes: list[Change] = field(default_factory=list)

    def add(self, iface: str, action: str, detail: str, service: str | None = None) -> None:
        self.changes.append(Change(iface, action, IMPACT[action], detail, service))


def _mode_mismatch(desired: str, live: str | None) -> bool:
    return desired != "auto" and live != desired


def _content_changes(
    b: _Builder,
    iface: str,
    action: str,
    old: tuple[ServiceState, ...],
    new: tuple[ServiceState, ...],
) -> None:
    by_old = {s.name: s for s in old}
    by_new = {s.name: s for s in new}
    for name in sorted(by_old.keys() | by_new.keys()):
        for line in service_differences(by_old.get(name), by_new.get(name)):
            b.add(iface, action, line, name)


def _same_program(
    b: _Builder,
    iface: Interface,
    prog: ProgramState,
    desired: tuple[ServiceState, ...],
    build: Build,
) -> InterfacePlan:
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
            b.add(iface.name, kind, line, want.name)
    cleanup = prog.stray_routes > 0 or not prog.rows_in_sync
    if cleanup:
        b.add(
            iface.name, "cleanup", f"{prog.stray_routes} stray route entries (an interrupted apply)"
        )
    metadata = prog.config_digest != build.digest
    if metadata and not ops and not cleanup:
        b.add(iface.name, "metadata", f"generation {prog.generation} -> {build.generation}")
    return InterfacePlan(iface.name, None, iface.xdp_mode, tuple(ops), cleanup, metadata)


def _interface(
    b: _Builder,
    iface: Interface,
    live: InterfaceState,
    build: Build,
    desired: tuple[ServiceState, ...],
    force: bool,
) -> InterfacePlan | InterfaceState:
    name, prog = iface.name, live.program
    if live.prog_id == 0:
        b.add(
            name, "attach", f"attach mplex in {iface.xdp_mode} mode (generation {build.generation})"
        )
        _content_changes(b, name, "attach", (), desired)
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
        _content_changes(b, name, "mode-change", prog.services, desired)
        return InterfacePlan(name, "mode-change", iface.xdp_mode)
    if prog.program_digest != build.program_digest:
        b.add(
            name,
            "swap",
            f"program {prog.program_digest[:12]} -> "
            f"{build.program_digest[:12]} (services or limits changed)",
        )
        _content_changes(b, name, "swap", prog.services, desired)
        return InterfacePlan(name, "swap", iface.xdp_mode)
    return _same_program(b, iface, prog, desired, build)


def plan(build: Build, live: LiveState, *, force: bool = False) -> Plan:
    """What it takes to make `live` equal to `build` (the file is the whole desired state)."""
    b = _Builder()
    desired = desired_services(build)
    wanted = {i.name for i in build.config.interfaces}
    missing = tuple(i.name for i in build.config.interfaces if i.name not in live.interfaces)
    plans: list[InterfacePlan] = []
    refused: list[InterfaceState] = []
    for iface in build.config.interfaces:
        if iface.name in missing:
            continue
        result = _interface(b, iface, live.interfaces[iface.name], build, desired, force)
        if isinstance(result, InterfaceState):
            refused.append(result)
        else:
            plans.append(result)
    for state in live.mplex_interfaces():
        if state.name not in wanted:
            b.add(state.name, "detach", f"detach mplex (id {state.prog_id}): not in the file")
            plans.append(InterfacePlan(state.name, "detach", "auto"))
    return Plan(build.generation, tuple(b.changes), tuple(plans), tuple(refused), missing)


def virtual_live(build: Build) -> LiveState:
    """The live state a host would have after applying `build` (for `diff OLD NEW`)."""
    services = desired_services(build)
    prog = ProgramState(
        prog_id=0,
        program_digest=build.program_digest,
        config_digest=build.digest,
        seq=0,
        applied_ns=0,
        services=services,
        route_slot=tuple(0 for _ in services),
        stray_routes=0,
        rows_in_sync=True,
    )
    return LiveState(
        {
            i.name: InterfaceState(i.name, 0, i.xdp_mode, -1, "mplex_xdp", prog)
            for i in build.config.interfaces
        }
    )


def virtual_host(old: Build, new: Build) -> LiveState:
    """virtual_live(old) plus empty entries for interfaces only `new` names."""
    live = dict(virtual_live(old).interfaces)
    for i in new.config.interfaces:
        live.setdefault(i.name, InterfaceState(i.name, 0, None, 0))
    return LiveState(live)
