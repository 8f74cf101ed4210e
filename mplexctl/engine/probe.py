"""Stage 4: read the live state from the kernel (netlink + the programs' maps). No pins."""

from __future__ import annotations

from mplexctl import constants as C
from mplexctl.backend import bpfsys, netlink
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.engine.state import InterfaceState, LiveState, ProgramState, ServiceState

_PROTO_NAMES = {v: k for k, v in C.PROTO_NUMBERS.items()}


def read_program(pm: ProgramMaps) -> ProgramState:
    meta = pm.meta()
    assert meta is not None  # ProgramMaps.open checked the magic
    info = pm.service_info()
    active = pm.active()
    entries = pm.route_entries()
    services, slots, live_keys = [], [], set()
    in_sync = True
    for index, (name, proto, port) in enumerate(info):
        row = layout.unpack_svc(pm.service_row(index, active[index]))
        flags = row.flags
        in_sync &= bool(flags & C.SVC_F_VALID)
        slot = row.slot
        slots.append(slot)
        prefix = layout.U32.pack((index << 1) | slot)
        tag_len = row.tag_len
        routes = []
        for key, values in entries.items():
            if key[:4] == prefix:
                live_keys.add(key)
                routes.append((key[4 : 4 + tag_len], layout.route_port(values[0])))
        services.append(
            ServiceState(
                index,
                name,
                _PROTO_NAMES.get(proto, str(proto)),
                port,
                row.windows,
                row.tag_off,
                tag_len,
                "pass" if flags & C.SVC_F_PASS_UNMATCHED else "drop",
                tuple(sorted(routes)),
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
        stray_routes=len(entries) - len(live_keys),
        rows_in_sync=in_sync,
        source_digest=meta.source_digest,
        content_digest=meta.content_digest,
        n_interfaces=meta.n_interfaces,
    )


def probe_interface(link: netlink.LinkXdp) -> InterfaceState:
    if link.prog_id == 0:
        return InterfaceState(link.name, link.index, None, 0)
    pm = ProgramMaps.open(link.prog_id)
    if pm is None:
        return InterfaceState(
            link.name, link.index, link.mode, link.prog_id, _prog_name(link.prog_id)
        )
    try:
        program = read_program(pm)
    finally:
        pm.close()
    return InterfaceState(link.name, link.index, link.mode, link.prog_id, C.PROG_NAME, program)


def _prog_name(prog_id: int) -> str:
    import os

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
