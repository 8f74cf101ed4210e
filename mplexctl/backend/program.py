"""The maps of one mplex program, found from a fresh load or from a program id."""

from __future__ import annotations

import errno
import os
import re
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.backend.routes import SlotTable, port_of, tag_word, tag_words
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build
from mplexctl.errors import KernelError

ZERO = layout.U32.pack(0)
PREFIX_SIZE = 4  # route keys start with a u32: layout.route_prefix(service index, slot)
LAYOUTS = {C.MAGIC: C.LAYOUT_VERSION, C.MAGIC_HASHED: 2, C.MAGIC_PREVIOUS: 1}  # -> version
ROUTE_KEY_SIZE = layout.ROUTE_KEY.size


class RouteDump:
    """One dump of mplex_routes, kept as the two packed buffers the kernel filled: a big route
    table is read in bulk (memoryview casts, slices) instead of entry by entry."""

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


class SlotDump(RouteDump):
    """The live routes of a layout-3 route table, presented as RouteDump presents a hash
    dump: per live slot (in slot order) a route key (prefix, tag) and its port; values_of
    gives mplex_route-shaped per-CPU values (port, then the route's counters)."""

    def __init__(self, table: SlotTable) -> None:
        self.map = table.map
        self.table_ = table
        raw = table.mm[: table.nslots * 16]
        self.slots = [m.start() for m in re.finditer(b"\x01", table.taken())]
        self.count = n = len(self.slots)
        self.key_size, self.buf_size = ROUTE_KEY_SIZE, layout.ROUTE.size
        # The live slots back to back, then each field cut out with strided slices (in C).
        live = b"".join([raw[16 * i : 16 * i + 16] for i in self.slots])
        prefixes = array("I", [k - 1 for k in array("H", live)[5::8]]).tobytes()
        keys = bytearray(n * ROUTE_KEY_SIZE)
        for j in range(4):
            keys[j::ROUTE_KEY_SIZE] = prefixes[j::4]
        for j in range(C.TAG_MAX_LEN):
            keys[4 + j :: ROUTE_KEY_SIZE] = live[j::16]
        self.keys = bytes(keys)
        self.ctrs = array("I", live)[3::4].tolist()
        ports = bytearray(2 * n)
        ports[0::2], ports[1::2] = live[8::16], live[9::16]
        self._ports = bytes(ports)
        self.values = b""
        self._counters: dict[int, list[tuple[int, int]]] | None = None

    @cached_property
    def ports_raw(self) -> bytes:
        return self._ports

    def counters_of(self, i: int) -> list[tuple[int, int]]:
        """Per-CPU (packets, bytes) of entry i (all CPUs read in one dump, once)."""
        if self._counters is None:
            self._counters = self.table_.counters()
        return self._counters.get(self.ctrs[i], [(0, 0)])

    def values_of(self, i: int) -> list[bytes]:
        port = int.from_bytes(self._ports[2 * i : 2 * i + 2], "big")
        return [layout.route_value(port, p, b) for p, b in self.counters_of(i)]


@dataclass(frozen=True)
class Meta:
    magic: int
    seq: int
    applied_ns: int
    build_digest: str
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

    def __init__(self, prog_id: int, maps: dict[str, bpfsys.Map], name: str = "") -> None:
        self.prog_id = prog_id
        self.maps = maps
        self.name = name  # the entry: mplex_xdp, mplex_tc_in or mplex_tc_out
        self._slots: SlotTable | None = None

    @property
    def hashed(self) -> bool:
        """True for a previous release's program (layouts 1, 2): routes in a per-CPU hash."""
        return C.MAP_ROUTE_CTR not in self.maps

    @property
    def slots(self) -> SlotTable:
        """The route table of a layout-3 program (mapped on first use)."""
        if self._slots is None:
            self._slots = SlotTable(self.maps[C.MAP_ROUTES], self.maps[C.MAP_ROUTE_CTR])
        return self._slots

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
        return cls(info.id, maps, info.name)

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
        if self._slots is not None:
            self._slots.close()
            self._slots = None
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

    def svc_row(self, index: int, which: int) -> layout.SvcRow:
        return layout.unpack_svc(self.service_row(index, which), self.hashed)

    def live_row(self, index: int) -> tuple[int, layout.SvcRow]:
        """(which, row) of service `index`'s live row."""
        which = self.active()[index]
        return which, self.svc_row(index, which)

    def seed_of(self, prefix: int) -> int | None:
        """Hash seed of the route table under `prefix`, from whichever row of its service
        names that slot (the live one first); None when neither does."""
        index, slot = layout.route_prefix_svc(prefix), layout.route_prefix_slot(prefix)
        if index >= self.n_services:
            return None
        which = self.active()[index]
        for w in (which, 1 - which):
            row = self.svc_row(index, w)
            if row.flags & C.SVC_F_VALID and row.slot == slot:
                return row.seed
        return None

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
        if not self.hashed:
            dump = self.route_dump()
            return {dump.key_of(i): dump.values_of(i) for i in range(dump.count)}
        m = self.maps[C.MAP_ROUTES]
        return {k: m.per_cpu(v) for k, v in m.dump().items()}

    def route_dump(self) -> RouteDump:
        if not self.hashed:
            return SlotDump(self.slots)
        return RouteDump(self.maps[C.MAP_ROUTES])

    def _find(self, key: bytes) -> tuple[int, int, int] | None:
        """(slot, prefix, tag word) of the live route `key` (layout 3), or None."""
        return self._find_all([key])[0]

    def _find_all(self, keys: list[bytes]) -> list[tuple[int, int, int] | None]:
        """_find of every key: each table's seed is read once, and a key the probe path of
        its table's seed does not find (a table no service row names: a stray, an
        interrupted apply) is looked up everywhere: by one pass over the table for the
        first such key, then in an index of every live slot built once (one more pass) for
        the others, so a batch costs two passes at most, not one per key."""
        seeds: dict[int, int | None] = {}
        index: dict[tuple[int, int], int] | None = None
        scanned = False
        t = self.slots
        out: list[tuple[int, int, int] | None] = []
        for key in keys:
            prefix, word = layout.U32.unpack(key[:4])[0], tag_word(key[4:])
            if prefix not in seeds:
                seeds[prefix] = self.seed_of(prefix)
            seed, want = seeds[prefix], layout.route_slot_key(prefix)
            at = None if seed is None else t.find(want, word, seed)
            if at is None and index is not None:
                at = index.get((want, word))
            elif at is None and not scanned:  # one key alone: no index to build
                scanned = True
                at = t.scan(want, word)
            elif at is None:
                index = t.index()
                at = index.get((want, word))
            out.append(None if at is None else (at, prefix, word))
        return out

    def route_values(self, key: bytes) -> list[bytes] | None:
        """Per-CPU values of one route entry, or None."""
        if not self.hashed:
            found = self._find(key)
            if found is None:
                return None
            w1 = self.slots.words[2 * found[0] + 1]
            per_cpu = self.slots.counters().get(w1 >> 32, [(0, 0)] * self.slots.ctr.ncpu)
            return [layout.route_value(port_of(w1), p, b) for p, b in per_cpu]
        m = self.maps[C.MAP_ROUTES]
        raw = m.lookup(key)
        return None if raw is None else m.per_cpu(raw)

    def write_routes(self, items: list[tuple[bytes, bytes | list[bytes]]]) -> None:
        """Write route values: one value for every CPU, or a list with one value per CPU.
        Layout 3: the port of an existing route is re-targeted in place (a missing one is
        added to its table); per-CPU values also set the route's counters."""
        if not self.hashed:
            for key, v in items:
                self._write_route(key, v)
            return
        m = self.maps[C.MAP_ROUTES]

        def raw(v: bytes | list[bytes]) -> bytes:
            if isinstance(v, bytes):
                return m.replicate(v)
            return b"".join(x.ljust(m.stride, b"\0") for x in v)

        keys = b"".join(k for k, _ in items)
        self._write_raw(len(items), keys, b"".join(raw(v) for _, v in items))

    def _write_route(self, key: bytes, v: bytes | list[bytes]) -> None:
        first = v if isinstance(v, bytes) else v[0]
        port = layout.route_port(first)
        found = self._find(key)
        t = self.slots
        if found is not None:
            at = found[0]
            t.retarget(at, port)
        else:
            prefix = layout.U32.unpack(key[:4])[0]
            word, seed = tag_word(key[4:]), self.seed_of(prefix) or 0
            spot = t.place_one(word, seed)
            if spot is None:
                raise KernelError(f"route table: no free slot within {C.ROUTE_PROBES_MAX} probes")
            at = spot[0]
            t.add(layout.route_slot_key(prefix), at, word, port)
        # As in a hash: one value is every CPU's (its counters too), a list one per CPU.
        per_cpu = v if isinstance(v, list) else [v] * t.ctr.ncpu
        counts = [layout.ROUTE.unpack(x.ljust(layout.ROUTE.size, b"\0"))[3:] for x in per_cpu]
        t.write_counters(t.words[2 * at + 1] >> 32, counts)

    def write_table(
        self,
        index: int,
        slot: int,
        routes: Mapping[bytes, int],
        keep: RouteDump | None = None,
        keep_slot: int = 0,
    ) -> tuple[int, int]:
        """Write a route table; returns (seed, probe bound) for the service row (layout 3;
        (0, 0) for a previous release's program). Layout 3: placed in free slots under a
        fresh seed; a tag `keep` holds under `keep_slot` keeps its counter index (and so its
        counters), other tags get free indexes, zeroed. Layouts 1/2: the packed keys and
        values are assembled with strided slice assignments, then one batch syscall;
        counters start at zero, a tag `keep` routes keeps its per-CPU counters."""
        if not self.hashed:
            return self._write_slots(index, slot, routes, keep, keep_slot)
        if not routes:
            return 0, 0
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
        return 0, 0

    def _write_slots(
        self,
        index: int,
        slot: int,
        routes: Mapping[bytes, int],
        keep: RouteDump | None,
        keep_slot: int,
    ) -> tuple[int, int]:
        t = self.slots
        words = tag_words(routes)
        placed = t.place(words)
        ctrs: list[int | None] = [None] * len(words)
        if isinstance(keep, SlotDump):
            prefix = layout.route_prefix(index, keep_slot)
            old = {t.words[2 * keep.slots[i]]: keep.ctrs[i] for i in keep.indexes(prefix)}
            ctrs = [old.get(w) for w in words]
        need = [i for i, c in enumerate(ctrs) if c is None]
        if need:
            free = t.free_counters(len(need))
            t.zero_counters(free)
            for i, c in zip(need, free, strict=True):
                ctrs[i] = c
        key = layout.route_slot_key(layout.route_prefix(index, slot))
        t.write(key, placed.positions, words, list(routes.values()), [c or 0 for c in ctrs])
        return placed.seed, placed.probes

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
        if not self.hashed:
            found = self._find_all(keys)
            self.slots.tombstone(f[0] for f in found if f is not None)
            return
        self.maps[C.MAP_ROUTES].delete_batch(keys)

    def delete_prefix(self, dump: RouteDump, prefix: int) -> None:
        """Delete every entry `dump` found under `prefix` (one batch; layout 3: tombstones,
        then the tombstones no live route needs become EMPTY)."""
        if isinstance(dump, SlotDump):
            self.slots.tombstone(dump.slots[i] for i in dump.indexes(prefix))
            self.sweep()
            return
        self.maps[C.MAP_ROUTES].delete_batch_raw(*dump.packed_keys(prefix))

    def sweep(self) -> int:
        """Free the tombstones no live route's probe path crosses (layout 3)."""
        seeds: dict[int, int] = {}
        active = self.active()
        for index in range(self.n_services):
            for which in (active[index], 1 - active[index]):
                row = self.svc_row(index, which)
                if row.flags & C.SVC_F_VALID:
                    prefix = layout.route_prefix(index, row.slot)
                    seeds.setdefault(layout.route_slot_key(prefix), row.seed)
        return self.slots.sweep(seeds)

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
        """Zero every verdict (and reply) counter of a counter slot, on every CPU."""
        m = self.maps[C.MAP_SVC_STATS]
        nsvc = self.n_services
        first = layout.stats_row(slot, 0, 0, nsvc)
        rows = array("I", range(first, first + nsvc * len(C.VERDICTS)))
        m.update_batch_raw(len(rows), rows.tobytes(), bytes(len(rows) * m.buf_size))
        replies = self.maps.get(C.MAP_REPLIES)
        if replies is not None:
            rows = array("I", range(slot * nsvc, (slot + 1) * nsvc))
            replies.update_batch_raw(len(rows), rows.tobytes(), bytes(len(rows) * replies.buf_size))

    def replies_by_slot(self) -> dict[int, dict[int, tuple[int, int]]]:
        """counter slot -> service index -> (packets, bytes) of replies restored, summed
        over CPUs ({}: no service has reply: restore)."""
        m = self.maps.get(C.MAP_REPLIES)
        if m is None:
            return {}
        nsvc = self.n_services
        count, keys, vals = m.dump_raw()
        rows = array("I", keys[: count * 4])
        bs, stride, vs = m.buf_size, m.stride, m.info.value_size
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for i, row in enumerate(rows):
            buf = vals[i * bs : (i + 1) * bs]
            pk = by = 0
            for cpu in range(m.ncpu if m.percpu else 1):
                p, b = layout.COUNTER.unpack(buf[cpu * stride : cpu * stride + vs])
                pk, by = pk + p, by + b
            if pk or by:
                out.setdefault(row // nsvc, {})[row % nsvc] = (pk, by)
        return out

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
        fresh = 0
        for svc in build.services:
            info = layout.pack_svc_info(svc.name, C.PROTO_NUMBERS[svc.protocol], svc.port)
            self.maps[C.MAP_SVC_INFO].update(layout.U32.pack(svc.index), info)
            # Counter indexes of a new program's routes: handed out in order, all zero.
            routes = dict(svc.routes)
            if self.hashed:
                seed, probes = self.write_table(svc.index, 0, routes)
            else:
                seed, probes = self._write_slots_at(svc.index, routes, fresh)
            fresh += len(routes)
            value = svc.value(build.max_windows, 0, probes, seed, self.hashed)
            self.write_service_row(svc.index, 0, value)
            self.set_active(svc.index, 0)
        self.write_meta(build, seq, applied_ns, source, content)

    def _write_slots_at(self, index: int, routes: dict[bytes, int], first: int) -> tuple[int, int]:
        """A new program's table of service `index`, counter indexes from `first` on."""
        t = self.slots
        words = tag_words(routes)
        placed = t.place(words)
        key = layout.route_slot_key(layout.route_prefix(index, 0))
        ctrs = list(range(first, first + len(words)))
        t.write(key, placed.positions, words, list(routes.values()), ctrs)
        return placed.seed, placed.probes
