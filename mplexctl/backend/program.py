"""The maps of one mplex program, found from a fresh load or from a program id."""

from __future__ import annotations

import errno
import os
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.errors import KernelError

ZERO = layout.U32.pack(0)
PREFIX_SIZE = 4  # route keys start with a u32: layout.route_prefix(service index, slot)
LAYOUTS = {C.MAGIC: C.LAYOUT_VERSION, C.MAGIC_PREVIOUS: 1}  # magic -> layout version


class RouteDump:
    """One dump of mplex_routes, kept as the two packed buffers the kernel filled: a 65,536-
    route table is read in bulk (memoryview casts, slices) instead of entry by entry."""

    def __init__(self, m: bpfsys.Map) -> None:
        self.map = m
        self.count, self.keys, self.values = m.dump_raw()
        self.key_size, self.buf_size = m.info.key_size, m.buf_size
        assert self.key_size % 4 == 0 and self.buf_size % 2 == 0

    def prefixes(self) -> list[int]:
        """Per entry, the u32 route prefix (service index, slot) its key starts with."""
        words = memoryview(self.keys).cast("I")
        return words[:: self.key_size // 4].tolist()

    @cached_property
    def groups(self) -> dict[int, list[int] | None]:
        """prefix -> indexes of its entries (None: all of them, the usual single service)."""
        prefixes = self.prefixes()
        distinct = set(prefixes)
        if len(distinct) <= 1:
            return dict.fromkeys(distinct)
        out: dict[int, list[int] | None] = {p: [] for p in distinct}
        for i, p in enumerate(prefixes):
            out[p].append(i)  # type: ignore[union-attr]
        return out

    @cached_property
    def ports_raw(self) -> bytes:
        """Per entry, in dump order, the 2 bytes of CPU 0's port (network byte order)."""
        return array("H", memoryview(self.values).cast("H")[:: self.buf_size // 2]).tobytes()

    def table(self, indexes: list[int] | None, tag_length: int) -> dict[bytes, int]:
        """{tag: port} of the given entries (None: all); the port of CPU 0's value."""
        ks = self.key_size
        ports = array("H", self.ports_raw)
        ports.byteswap()  # stored in network byte order
        if indexes is None:
            start = PREFIX_SIZE
            tags = [self.keys[i : i + tag_length] for i in range(start, self.count * ks, ks)]
            return dict(zip(tags, ports, strict=True))
        keys = self.keys
        return {
            keys[i * ks + PREFIX_SIZE : i * ks + PREFIX_SIZE + tag_length]: ports[i]
            for i in indexes
        }

    def indexes(self, prefix: int) -> range | list[int]:
        """Indexes of the entries whose key starts with `prefix`."""
        groups = self.groups
        if prefix not in groups:
            return []
        found = groups[prefix]
        return range(self.count) if found is None else found

    def packed_keys(self, prefix: int) -> tuple[int, bytes]:
        """(count, keys back to back) of the entries under `prefix` (for one batch delete)."""
        indexes = self.indexes(prefix)
        if isinstance(indexes, range) and len(indexes) == self.count:
            return self.count, self.keys
        return len(indexes), b"".join(map(self.key_of, indexes))

    def positions(self, prefix: int, tag_length: int) -> dict[bytes, int]:
        """tag -> entry index, for the entries under `prefix`."""
        ks, keys, start = self.key_size, self.keys, PREFIX_SIZE
        return {keys[i * ks + start : i * ks + start + tag_length]: i for i in self.indexes(prefix)}

    def key_of(self, i: int) -> bytes:
        return self.keys[i * self.key_size : (i + 1) * self.key_size]

    def values_of(self, i: int) -> list[bytes]:
        """Per-CPU values of entry i."""
        return self.map.per_cpu(self.values[i * self.buf_size : (i + 1) * self.buf_size])

    def entries(self) -> dict[bytes, list[bytes]]:
        """key -> per-CPU values (entry by entry)."""
        return {self.key_of(i): self.values_of(i) for i in range(self.count)}


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

    @property
    def layout(self) -> int:
        """Layout version of the program's maps (1: the previous release's)."""
        return LAYOUTS.get(self.magic, 0)


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
        if meta is None or meta.magic not in LAYOUTS:
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
        raw = self.maps[C.MAP_SERVICES].lookup(layout.U32.pack(layout.svc_row(index, which)))
        return raw or b""

    def write_service_row(self, index: int, which: int, value: bytes) -> None:
        self.maps[C.MAP_SERVICES].update(layout.U32.pack(layout.svc_row(index, which)), value)

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

    def route_dump(self) -> RouteDump:
        return RouteDump(self.maps[C.MAP_ROUTES])

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

        keys = b"".join(k for k, _ in items)
        self._write_raw(len(items), keys, b"".join(raw(v) for _, v in items))

    def write_table(
        self,
        index: int,
        slot: int,
        routes: Mapping[bytes, int],
        keep: RouteDump | None = None,
        keep_slot: int = 0,
    ) -> None:
        """Write a whole route table of service `index` under `slot` in bulk: the packed keys
        and values are assembled with strided slice assignments, so 65,536 routes take a few
        ms before the one batch syscall. Counters start at zero; with `keep` (a dump holding
        the live table under `keep_slot`, with tags of the same length), a tag already routed
        keeps its per-CPU counters."""
        if not routes:
            return
        m = self.maps[C.MAP_ROUTES]
        n, ks, bs = len(routes), m.info.key_size, m.buf_size
        lengths = set(map(len, routes))
        if len(lengths) != 1:  # tags of one service all have tag.length bytes
            raise ValueError(f"service {index}: route tags of several lengths {sorted(lengths)}")
        (tag_len,) = lengths
        keys = bytearray(n * ks)
        kv = memoryview(keys)
        kv.cast("I")[:: ks // 4] = array("I", [layout.route_prefix(index, slot)]) * n
        tags = b"".join(routes)
        for j in range(tag_len):
            kv[PREFIX_SIZE + j :: ks] = tags[j::tag_len]
        ports = array("H", routes.values())
        ports.byteswap()  # network byte order
        raw = ports.tobytes()
        if keep is None:
            vals = bytearray(n * bs)
        else:  # each kept tag's old value buffer (all CPUs), then the new ports written over
            old, kept, zero = (
                keep.positions(layout.route_prefix(index, keep_slot), tag_len),
                keep.values,
                bytes(bs),
            )
            at = map(old.get, routes)
            vals = bytearray(
                b"".join([zero if i is None else kept[i * bs : (i + 1) * bs] for i in at])
            )
        vv = memoryview(vals)
        for cpu in range(m.ncpu if m.percpu else 1):
            for j in range(2):
                vv[cpu * m.stride + j :: bs] = raw[j::2]
        self._write_raw(n, bytes(keys), bytes(vals))

    def _write_raw(self, count: int, keys: bytes, vals: bytes) -> None:
        m = self.maps[C.MAP_ROUTES]
        try:
            m.update_batch_raw(count, keys, vals)
        except bpfsys.BpfError as exc:
            if exc.errno in (errno.E2BIG, errno.ENOSPC, errno.ENOMEM):
                raise KernelError(
                    f"route map full: {m.info.max_entries} entries "
                    f"(limits.routes = {m.info.max_entries // 2})"
                ) from None
            raise

    def delete_routes(self, keys: list[bytes]) -> None:
        self.maps[C.MAP_ROUTES].delete_batch(keys)

    def delete_prefix(self, dump: RouteDump, prefix: int) -> None:
        """Delete every entry `dump` found under `prefix` (one batch)."""
        self.maps[C.MAP_ROUTES].delete_batch_raw(*dump.packed_keys(prefix))

    # --- interfaces: ifindex -> counter slot -------------------------------------------------
    def if_slots(self) -> dict[int, int]:
        """ifindex -> counter slot of every interface that has one ({}: previous layout)."""
        out: dict[int, int] = {}
        for name in (C.MAP_IFSLOT, C.MAP_IFSLOT_HI):
            m = self.maps.get(name)
            if m is None:
                continue
            count, keys, vals = m.dump_raw()
            ks = array("I", keys[: count * 4])
            vs = array("I", vals[: count * 4])
            out.update((k, v) for k, v in zip(ks, vs, strict=True) if v != C.IF_SLOT_NONE)
        return out

    def _slot_map(self, ifindex: int) -> bpfsys.Map:
        return self.maps[C.MAP_IFSLOT if ifindex < C.IFINDEX_DIRECT else C.MAP_IFSLOT_HI]

    def set_if_slot(self, ifindex: int, slot: int) -> None:
        """Count the packets of interface `ifindex` under `slot` (starting from zero)."""
        self.zero_slot(slot)
        self._slot_map(ifindex).update(layout.U32.pack(ifindex), layout.U32.pack(slot))

    def clear_if_slot(self, ifindex: int) -> None:
        """Forget the counter slot of interface `ifindex` (nothing when it has none)."""
        m = self._slot_map(ifindex)
        if ifindex < C.IFINDEX_DIRECT:
            m.update(layout.U32.pack(ifindex), layout.U32.pack(C.IF_SLOT_NONE))
        elif m.lookup(layout.U32.pack(ifindex)) is not None:
            m.delete_batch([layout.U32.pack(ifindex)])

    def zero_slot(self, slot: int) -> None:
        """Zero every verdict counter of a counter slot, on every CPU (one batch)."""
        m = self.maps[C.MAP_SVC_STATS]
        nsvc = self.n_services
        first = layout.stats_row(slot, 0, 0, nsvc)
        rows = array("I", range(first, first + nsvc * len(C.VERDICTS)))
        m.update_batch_raw(len(rows), rows.tobytes(), bytes(len(rows) * m.buf_size))

    @property
    def n_services(self) -> int:
        return self.maps[C.MAP_ACTIVE].info.max_entries

    @property
    def slot_capacity(self) -> int:
        """Counter slots compiled into the program (1: a previous release's program)."""
        rows = self.maps[C.MAP_SVC_STATS].info.max_entries
        return rows // max(1, self.n_services * len(C.VERDICTS))

    # --- counters ---------------------------------------------------------------------------
    def counters_by_slot(self) -> dict[int, dict[tuple[int, int], tuple[int, int]]]:
        """counter slot -> (service index, verdict index) -> (packets, bytes) summed over
        CPUs; one dump of mplex_svc_stats (a previous release's program: all in slot 0)."""
        m = self.maps[C.MAP_SVC_STATS]
        out: dict[int, dict[tuple[int, int], tuple[int, int]]] = {}
        nv, nsvc = len(C.VERDICTS), self.n_services
        count, keys, vals = m.dump_raw()
        rows = array("I", keys[: count * 4])
        bs, stride, vs = m.buf_size, m.stride, m.info.value_size
        for i, row in enumerate(rows):
            buf = vals[i * bs : (i + 1) * bs]
            pk = by = 0
            for cpu in range(m.ncpu if m.percpu else 1):
                p, b = layout.COUNTER.unpack(buf[cpu * stride : cpu * stride + vs])
                pk, by = pk + p, by + b
            slot, svc, verdict = row // (nv * nsvc), (row // nv) % nsvc, row % nv
            out.setdefault(slot, {})[(svc, verdict)] = (pk, by)
        return out

    def service_counters(self, slot: int | None = None) -> dict[tuple[int, int], tuple[int, int]]:
        """(service index, verdict index) -> (packets, bytes) summed over CPUs, of one counter
        slot (one interface), or summed over all of them (None)."""
        by_slot = self.counters_by_slot()
        if slot is not None:
            return by_slot.get(slot, {})
        out: dict[tuple[int, int], tuple[int, int]] = {}
        for counters in by_slot.values():
            for key, (p, b) in counters.items():
                pk, by = out.get(key, (0, 0))
                out[key] = (pk + p, by + b)
        return out

    # --- a fresh program --------------------------------------------------------------------
    def fill(
        self,
        build: Build,
        seq: int = 1,
        applied_ns: int = 0,
        source: str = "",
        content: str = "",
        if_slots: Mapping[int, int] | None = None,
    ) -> None:
        """Fill the maps of a program that is not attached yet: row 0, route slot 0, and the
        counter slots of the interfaces it will be attached to (ifindex -> slot)."""
        for ifindex, slot in (if_slots or {}).items():
            self._slot_map(ifindex).update(layout.U32.pack(ifindex), layout.U32.pack(slot))
        for svc in build.services:
            info = layout.pack_svc_info(svc.name, C.PROTO_NUMBERS[svc.protocol], svc.port)
            self.maps[C.MAP_SVC_INFO].update(layout.U32.pack(svc.index), info)
            self.write_service_row(svc.index, 0, svc.value(build.max_windows, slot=0))
            self.set_active(svc.index, 0)
        for svc in build.services:
            self.write_table(svc.index, 0, svc.routes)
        self.write_meta(build, seq, applied_ns, source, content)
