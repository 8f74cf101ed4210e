"""Stage 4: read the live state from the kernel (netlink + the programs' maps). No pins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import MappingProxyType

from mplexctl import constants as C
from mplexctl.backend import bpfsys, netlink
from mplexctl.backend.program import ProgramMaps, RouteDump
from mplexctl.compiler import layout
from mplexctl.engine.state import InterfaceState, LiveState, ProgramState, ServiceState

_PROTO_NAMES = {v: k for k, v in C.PROTO_NUMBERS.items()}


def read_program(pm: ProgramMaps, dump: RouteDump) -> ProgramState:
    """The program's state from its maps; `dump` is one dump of its route map."""
    meta = pm.meta()
    assert meta is not None  # ProgramMaps.open checked the magic
    info = pm.service_info()
    active = pm.active()
    groups = dump.groups()
    services, slots = [], []
    live_count = 0
    in_sync = True
    for index, (name, proto, port) in enumerate(info):
        row = layout.unpack_svc(pm.service_row(index, active[index]))
        flags = row.flags
        in_sync &= bool(flags & C.SVC_F_VALID)
        slot = row.slot
        slots.append(slot)
        prefix = (index << 1) | slot
        routes: dict[bytes, int] = {}
        if prefix in groups:
            routes = dump.table(groups[prefix], row.tag_len)
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
                MappingProxyType(routes),
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
    )


@contextmanager
def opened(
    link: netlink.LinkXdp,
) -> Iterator[tuple[InterfaceState, ProgramMaps | None, RouteDump | None]]:
    """The interface's state, and while inside, its program's maps and one route dump."""
    if link.prog_id == 0:
        yield InterfaceState(link.name, link.index, None, 0), None, None
        return
    pm = ProgramMaps.open(link.prog_id)
    if pm is None:
        name = _prog_name(link.prog_id)
        yield InterfaceState(link.name, link.index, link.mode, link.prog_id, name), None, None
        return
    try:
        dump = pm.route_dump()
        program = read_program(pm, dump)
        state = InterfaceState(link.name, link.index, link.mode, link.prog_id, C.PROG_NAME, program)
        yield state, pm, dump
    finally:
        pm.close()


def probe_interface(link: netlink.LinkXdp) -> InterfaceState:
    with opened(link) as (state, _pm, _entries):
        return state


def _prog_name(prog_id: int) -> str:
    try:
        fd = bpfsys.prog_fd_by_id(prog_id)
    except OSError:
        return "?"
    try:
        return bpfsys.prog_info(fd).name or "?"
    finally:
        os.close(fd)


def probe() -> LiveState:
    """Every interface of this network namespace and what XDP program it carries."""
    return LiveState({link.name: probe_interface(link) for link in netlink.list_links()})


def recorded_sources() -> set[str]:
    """The config-file digests the mplex programs of this namespace were applied from, read
    from their metadata alone (no route dump): tells apply whether a no-op is possible."""
    out = set()
    for link in netlink.list_links():
        if link.prog_id:
            pm = ProgramMaps.open(link.prog_id)
            if pm is not None:
                try:
                    meta = pm.meta()
                    out.add(meta.source_digest if meta else "")
                finally:
                    pm.close()
    return out
