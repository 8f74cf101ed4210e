"""The maps of one mplex program, found from a fresh load or from a program id."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.errors import KernelError

ZERO = layout.U32.pack(0)


@dataclass(frozen=True)
class Meta:
    magic: int
    seq: int
    applied_ns: int
    config_digest: str
    program_digest: str
    source_digest: str
    content_digest: str
    n_interfaces: int


class ProgramMaps:
    """Typed access to mplex_{active,svcs,routes,svc_stats,meta} of one program."""

    def __init__(self, prog_id: int, maps: dict[str, bpfsys.Map]) -> None:
        self.prog_id = prog_id
        self.maps = maps

    @classmethod
    def from_fd(cls, prog_fd: int, maps: dict[str, bpfsys.Map] | None = None) -> ProgramMaps:
        info = bpfsys.prog_info(prog_fd)
        if maps is None:
            maps = {}
            for map_id in info.map_ids:
                m = bpfsys.Map.from_id(map_id)
                if m.name in maps:
                    m.close()
                    continue
                maps[m.name] = m
        return cls(info.id, maps)

    @classmethod
    def open(cls, prog_id: int) -> ProgramMaps | None:
        """The maps of program prog_id, or None when it is not an mplex program."""
        try:
            fd = bpfsys.prog_fd_by_id(prog_id)
        except bpfsys.BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        try:
            pm = cls.from_fd(fd)
        finally:
            os.close(fd)
        if not all(n in pm.maps for n in (C.MAP_META, C.MAP_SERVICES, C.MAP_ROUTES)):
            pm.close()
            return None
        meta = pm.meta()
        if meta is None or meta.magic != C.MAGIC:
            pm.close()
            return None
        return pm

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    # --- metadata ---------------------------------------------------------------------------
    def meta(self) -> Meta | None:
        raw = self.maps[C.MAP_META].lookup(ZERO)
        if raw is None:
            return None
        magic, seq, applied, cdig, pdig, sdig, kdig, n_ifaces, _ = layout.META.unpack_from(raw)
        return Meta(magic, seq, applied, cdig.hex(), pdig.hex(), sdig.hex(), kdig.hex(), n_ifaces)

    def write_meta(
        self, build: Build, seq: int, applied_ns: int, source_digest: str = "", content: str = ""
    ) -> None:
        raw = layout.META.pack(
            C.MAGIC,
            seq,
            applied_ns,
            bytes.fromhex(build.digest),
            bytes.fromhex(build.program_digest),
            bytes.fromhex(source_digest or "00" * 32),
            bytes.fromhex(content or "00" * 32),
            len(build.config.interfaces),
            0,
        )
        self.maps[C.MAP_META].update(ZERO, raw)

    # --- services ---------------------------------------------------------------------------
    def active(self) -> list[int]:
        m = self.maps[C.MAP_ACTIVE]
        return [
            layout.U32.unpack(m.lookup(layout.U32.pack(i)) or ZERO)[0] & 1
            for i in range(m.info.max_entries)
        ]

    def service_row(self, index: int, which: int) -> bytes:
        raw = self.maps[C.MAP_SERVICES].lookup(layout.U32.pack(index * 2 + which))
        return raw or b""

    def write_service_row(self, index: int, which: int, value: bytes) -> None:
        self.maps[C.MAP_SERVICES].update(layout.U32.pack(index * 2 + which), value)

    def set_active(self, index: int, which: int) -> None:
        self.maps[C.MAP_ACTIVE].update(layout.U32.pack(index), layout.U32.pack(which))

    def service_info(self) -> list[tuple[str, int, int]]:
        """(name, protocol number, port) of each compiled service, by index."""
        m = self.maps[C.MAP_SVC_INFO]
        rows = [m.lookup(layout.U32.pack(i)) for i in range(m.info.max_entries)]
        return [layout.unpack_svc_info(r) for r in rows if r is not None]

    # --- routes -----------------------------------------------------------------------------
    def route_entries(self) -> dict[bytes, list[bytes]]:
        """Every route entry: key -> per-CPU values."""
        m = self.maps[C.MAP_ROUTES]
        return {k: m.per_cpu(v) for k, v in m.dump().items()}

    def route_values(self, key: bytes) -> list[bytes] | None:
        """Per-CPU values of one route entry, or None."""
        m = self.maps[C.MAP_ROUTES]
        raw = m.lookup(key)
        return None if raw is None else m.per_cpu(raw)

    def write_routes(self, items: list[tuple[bytes, bytes | list[bytes]]]) -> None:
        """Write route values: one value for every CPU, or a list with one value per CPU."""
        m = self.maps[C.MAP_ROUTES]

        def raw(v: bytes | list[bytes]) -> bytes:
            if isinstance(v, bytes):
                return m.replicate(v)
            return b"".join(x.ljust(m.stride, b"\0") for x in v)

        try:
            m.update_batch([(k, raw(v)) for k, v in items])
        except bpfsys.BpfError as exc:
            if exc.errno in (errno.E2BIG, errno.ENOSPC, errno.ENOMEM):
                raise KernelError(
                    f"route map full: {m.info.max_entries} entries "
                    f"(limits.routes = {m.info.max_entries // 2})"
                ) from None
            raise

    def delete_routes(self, keys: list[bytes]) -> None:
        self.maps[C.MAP_ROUTES].delete_batch(keys)

    # --- counters ---------------------------------------------------------------------------
    def service_counters(self) -> dict[tuple[int, int], tuple[int, int]]:
        """(service index, verdict index) -> (packets, bytes) summed over CPUs."""
        m = self.maps[C.MAP_SVC_STATS]
        out: dict[tuple[int, int], tuple[int, int]] = {}
        nv = len(C.VERDICTS)
        for key, raw in m.dump().items():
            row = layout.U32.unpack(key)[0]
            pk = by = 0
            for v in m.per_cpu(raw):
                p, b = layout.COUNTER.unpack(v)
                pk, by = pk + p, by + b
            out[(row // nv, row % nv)] = (pk, by)
        return out

    # --- a fresh program --------------------------------------------------------------------
    def fill(
        self, build: Build, seq: int = 1, applied_ns: int = 0, source: str = "", content: str = ""
    ) -> None:
        """Fill the maps of a program that is not attached yet: row 0, route slot 0."""
        for svc in build.services:
            info = layout.pack_svc_info(svc.name, C.PROTO_NUMBERS[svc.protocol], svc.port)
            self.maps[C.MAP_SVC_INFO].update(layout.U32.pack(svc.index), info)
            self.write_service_row(svc.index, 0, svc.value(build.max_windows, slot=0))
            self.set_active(svc.index, 0)
        self.write_routes([(r.key(0), layout.route_value(r.port)) for r in build.routes])
        self.write_meta(build, seq, applied_ns, source, content)
