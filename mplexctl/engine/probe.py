"""Stage 4: read the live state from the kernel (netlink + the programs' maps). No pins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

from mplexctl import constants as C
from mplexctl.accel import reprobe
from mplexctl.accel.reprobe import RouteWrites
from mplexctl.backend import bpfsys, netlink
from mplexctl.backend.program import ProgramMaps, RouteDump
from mplexctl.compiler import layout
from mplexctl.config.model import Routes
from mplexctl.engine.state import (
    InterfaceState,
    LiveState,
    ProgramState,
    RouteImage,
    ServiceState,
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
            ServiceState(
                index,
                name,
                _PROTO_NAMES.get(proto, str(proto)),
                port,
                row.windows,
                row.tag_off,
                row.tag_len,
                "pass" if flags & C.SVC_F_PASS_UNMATCHED else "drop",
                routes,
            )
        )
    return ProgramState(
        prog_id=pm.prog_id,
        program_digest=meta.program_digest,
        config_digest=meta.config_digest,
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


def probe(expect: dict[int, RouteWrites] | None = None) -> LiveState:
    """Every interface of this network namespace and what XDP program it carries. A program
    shared by several interfaces is read (and its route map dumped) once. `expect`: per prog
    id, in-place route writes an apply made, which accel/reprobe.py may confirm in bulk."""
    expect = expect or {}
    links = netlink.list_links()
    found: dict[int, tuple[ProgramState | None, str]] = {}
    for link in links:
        if link.prog_id and link.prog_id not in found:
            with opened_program(link.prog_id, expect.get(link.prog_id)) as (prog, _, _, name):
                found[link.prog_id] = (prog, name)
    return LiveState(
        {link.name: interface_state(link, *found.get(link.prog_id, (None, ""))) for link in links}
    )
