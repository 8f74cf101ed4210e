"""Stage 4: read the live state from the kernel (netlink + the programs' maps). No pins."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType

from mplexctl import constants as C
from mplexctl.accel import reprobe
from mplexctl.accel.reprobe import RouteWrites
from mplexctl.backend import bpfsys, clsact, netlink, tchook
from mplexctl.backend.program import ProgramMaps, RouteDump
from mplexctl.compiler import layout
from mplexctl.compiler.build import ServiceEntry
from mplexctl.config.model import Routes
from mplexctl.engine.state import (
    InterfaceState,
    LiveState,
    ProgramState,
    RouteImage,
)

_PROTO_NAMES = {v: k for k, v in C.PROTO_NUMBERS.items()}


def read_program(
    pm: ProgramMaps, dump: RouteDump, writes: RouteWrites | None = None
) -> ProgramState:
    """The program's state from its maps; `dump` is one dump of its route map; `writes`:
    what an apply wrote in place, which accel/reprobe.py may confirm without decoding."""
    meta = pm.meta()
    assert meta is not None  # ProgramMaps.open checked the magic
    info = pm.service_info()
    active = pm.active()
    rows = [pm.svc_row(i, active[i]) for i in range(len(info))]
    slots = [row.slot for row in rows]
    names = [name for name, _, _ in info]
    known = reprobe.confirmed(writes, pm.prog_id, dump, names, slots)  # None: decode
    groups = {} if known is not None else dump.groups
    services = []
    live_count = 0
    in_sync = True
    for index, ((name, proto, port), row) in enumerate(zip(info, rows, strict=True)):
        flags = row.flags
        in_sync &= bool(flags & C.SVC_F_VALID)
        prefix = layout.route_prefix(index, row.slot)
        routes: Routes = MappingProxyType({})
        if known is not None:
            routes = known[index]
        elif prefix in groups:
            routes = MappingProxyType(dump.table(groups[prefix], row.tag_len))
        live_count += len(routes)
        services.append(
            ServiceEntry(
                index,
                name,
                _PROTO_NAMES.get(proto, str(proto)),
                port,
                row.windows,
                row.tag_off,
                row.tag_len,
                "pass" if flags & C.SVC_F_PASS_UNMATCHED else "drop",
                routes,
                "restore" if flags & C.SVC_F_RESTORE else "none",
            )
        )
    return ProgramState(
        prog_id=pm.prog_id,
        program_digest=meta.program_digest,
        build_digest=meta.build_digest,
        seq=meta.seq,
        applied_ns=meta.applied_ns,
        services=tuple(services),
        route_slot=tuple(slots),
        stray_routes=dump.count - live_count,
        rows_in_sync=in_sync,
        source_digest=meta.source_digest,
        content_digest=meta.content_digest,
        n_interfaces=meta.n_interfaces,
        image=RouteImage(dump.keys, dump.ports_raw, dump.key_size),
        layout=meta.layout,
        if_slots=MappingProxyType(pm.if_slots()),
        slot_capacity=pm.slot_capacity,
        map_limits=_map_limits(pm),
    )


def _map_limits(pm: ProgramMaps) -> tuple[int, int]:
    """(limits.routes, limits.windows) the program's maps were sized for."""
    # 2 x limits.routes route counters (layout 3); earlier layouts: a route hash of that size
    sized = pm.maps.get(C.MAP_ROUTE_CTR) or pm.maps[C.MAP_ROUTES]
    routes = sized.info.max_entries // 2
    svc_size = pm.maps[C.MAP_SERVICES].info.value_size
    return routes, (svc_size - layout.SVC_HEAD.size) // layout.WINDOW.size


@contextmanager
def opened_program(
    prog_id: int, writes: RouteWrites | None = None
) -> Iterator[tuple[ProgramState | None, ProgramMaps | None, RouteDump | None, str]]:
    """(state, maps, one route dump, program name) of an attached program while inside; the
    state and maps are None when it is not an mplex program."""
    pm = ProgramMaps.open(prog_id)
    if pm is None:
        yield None, None, None, _prog_name(prog_id)
        return
    try:
        dump = pm.route_dump()
        yield read_program(pm, dump, writes), pm, dump, C.PROG_NAME
    finally:
        pm.close()


def _prog_name(prog_id: int) -> str:
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        return "?"
    try:
        return bpfsys.prog_info(fd).name or "?"
    finally:
        os.close(fd)


def interface_state(
    link: netlink.LinkXdp, program: ProgramState | None, prog_name: str
) -> InterfaceState:
    if link.prog_id == 0:
        return InterfaceState(link.name, link.index, None, 0, up=link.up)
    return InterfaceState(
        link.name, link.index, link.mode, link.prog_id, prog_name, program, up=link.up
    )


@dataclass(frozen=True)
class TcHooks:
    """mplex's programs at an interface's TC hooks (0: none): ingress (hook: tc), egress; and
    how each is attached (tcx | clsact, tchook.py)."""

    ingress: int = 0
    egress: int = 0
    ingress_via: str = field(default="", compare=False)
    egress_via: str = field(default="", compare=False)


def _mplex_tc(found: list[tchook.Attached], name: str) -> tchook.Attached | None:
    """mplex's entry `name` among the programs of a hook. A cls_bpf filter counts only when
    mplexctl made it (its name): mplex's program in someone else's filter is theirs, and
    mplexctl could neither replace nor remove that filter."""
    for item in found:
        if item.by_mplex and _prog_name(item.prog_id) == name:
            return item
    return None


def tc_hooks(index: int, qdisc: str | None = clsact.LOOKUP) -> TcHooks:
    """mplex's programs at the TC hooks of interface `index` (tcx or clsact); every other
    program there is ignored. qdisc: its ingress qdisc's kind when known (None: none)."""
    try:
        ingress = _mplex_tc(tchook.query(index, "ingress", qdisc), C.PROG_TC_IN)
        egress = _mplex_tc(tchook.query(index, "egress", qdisc), C.PROG_TC_OUT)
    except bpfsys.BpfError:  # the interface went away meanwhile: nothing of ours there
        return TcHooks()
    return TcHooks(
        ingress.prog_id if ingress else 0,
        egress.prog_id if egress else 0,
        ingress.via if ingress else "",
        egress.via if egress else "",
    )


def all_tc_hooks(links: list[netlink.LinkXdp]) -> dict[int, TcHooks]:
    """tc_hooks of every link; cls_bpf filters are looked for only where a clsact (or
    legacy ingress) qdisc is: one qdisc dump for all links."""
    qdiscs = clsact.ingress_qdiscs()
    return {link.index: tc_hooks(link.index, qdiscs.get(link.index)) for link in links}


def _generations(
    ids: dict[int, str], expect: dict[int, RouteWrites]
) -> tuple[dict[int, ProgramState], dict[int, str]]:
    """(prog id -> its generation's state, prog id -> program name) of attached programs:
    the entries of one generation share their maps (one meta map) and are read once."""
    names: dict[int, str] = {}
    groups: dict[int, dict[int, ProgramMaps]] = {}  # meta map id -> prog id -> maps
    for prog_id in ids:
        pm = ProgramMaps.open(prog_id)
        if pm is None:
            names[prog_id] = _prog_name(prog_id)
            continue
        names[prog_id] = pm.name or C.PROG_NAME
        groups.setdefault(pm.maps[C.MAP_META].info.id, {})[prog_id] = pm
    out: dict[int, ProgramState] = {}
    for members in groups.values():
        try:
            xdp = [i for i in members if ids[i] == "xdp"]
            canonical = min(xdp) if xdp else min(members)
            pm = members[canonical]
            state = read_program(pm, pm.route_dump(), expect.get(canonical))
            progs: dict[str, int] = {}
            for prog_id in sorted(members):
                progs.setdefault(names[prog_id], prog_id)
            state = dataclasses.replace(state, progs=MappingProxyType(progs))
            out.update(dict.fromkeys(members, state))
        finally:
            for m in members.values():
                m.close()
    return out, names


def attached_ids() -> set[int]:
    """Ids of the XDP programs and of mplex's TC programs attached in this namespace."""
    ids: set[int] = set()
    links = netlink.list_links()
    hooks = all_tc_hooks(links)
    for link in links:
        tc = hooks[link.index]
        ids.update(i for i in (link.prog_id, tc.ingress, tc.egress) if i)
    return ids


def probe(expect: dict[int, RouteWrites] | None = None) -> LiveState:
    """Every interface of this network namespace, the XDP program it carries and mplex's TC
    programs. A generation attached to several interfaces (and hooks) is read (and its route
    map dumped) once. `expect`: per generation id, in-place route writes an apply made,
    which accel/reprobe.py may confirm in bulk."""
    links = netlink.list_links()
    hooks = all_tc_hooks(links)
    ids: dict[int, str] = {}
    for link in links:
        for prog_id, hook in (
            (link.prog_id, "xdp"),
            (hooks[link.index].ingress, "tc"),
            (hooks[link.index].egress, "egress"),
        ):
            if prog_id:
                ids.setdefault(prog_id, hook)
    states, names = _generations(ids, expect or {})

    def state(link: netlink.LinkXdp) -> InterfaceState:
        base = interface_state(link, states.get(link.prog_id), names.get(link.prog_id, ""))
        tc = hooks[link.index]
        return dataclasses.replace(
            base,
            tc_id=tc.ingress,
            tc_program=states.get(tc.ingress),
            egress_id=tc.egress,
            egress_program=states.get(tc.egress),
            tc_via=tc.ingress_via,
            egress_via=tc.egress_via,
        )

    return LiveState({link.name: state(link) for link in links})
