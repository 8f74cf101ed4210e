"""The route table of a layout-3 program: open addressing in an mmapped BPF array.

See constants.py ("Routes") for the slot format. Every change is a sequence of aligned
8-byte stores into the mmapped array, ordered so that a packet never reads a slot half
changed (the data plane reads word 1, the tag, then word 1 again):
- re-target: one store of word 1 (same key and counter index, the new port);
- delete: one store of word 1 with the TOMBSTONE key (a lookup probes on past it);
- add: the tag (word 0) while the slot is EMPTY or a TOMBSTONE, then word 1, with a counter
  index other than the one the slot held last (so a packet that read the old word 1 and the
  new tag sees the counter index change and does not match);
- a TOMBSTONE becomes EMPTY only when no live route lies beyond it on its probe path.
"""

from __future__ import annotations

import mmap
import os
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.compiler import layout
from mplexctl.errors import KernelError

SLOT_SIZE = 16
M64 = (1 << 64) - 1
KEY_MASK = 0xFFFF
EMPTY, TOMB = C.ROUTE_KEY_EMPTY, C.ROUTE_KEY_TOMBSTONE


def tag_word(tag: bytes) -> int:
    """A tag as the data plane reads it: little-endian, zero-padded to 8 bytes."""
    return int.from_bytes(tag, "little")


def tag_words(tags: Iterable[bytes]) -> list[int]:
    """tag_word of every tag, in bulk when they share one length (a service's tags do)."""
    tags = list(tags)
    lengths = set(map(len, tags))
    if len(lengths) != 1:
        return list(map(tag_word, tags))
    (n,) = lengths
    joined = b"".join(tags)
    buf = bytearray(8 * len(tags))
    for j in range(n):
        buf[j::8] = joined[j::n]
    return array("Q", buf).tolist()


def homes(words: Iterable[int], seed: int, bits: int) -> list[int]:
    """Home slot of each tag word under `seed` (the data plane's mplex_route_home)."""
    a, k, s, sh = seed | 1, C.ROUTE_HASH_MUL, C.ROUTE_HASH_SHIFT, 64 - bits
    return [((((x := t * a & M64) ^ (x >> s)) * k) & M64) >> sh for t in words]


def new_seed() -> int:
    return int.from_bytes(os.urandom(8), "little")


def word1(port: int, key: int, ctr: int) -> int:
    """Word 1 of a slot; `port` in host order (stored in network byte order)."""
    be = ((port & 0xFF) << 8) | (port >> 8)
    return be | key << C.SLOT_KEY_SHIFT | ctr << C.SLOT_CTR_SHIFT


def port_of(w1: int) -> int:
    be = w1 & 0xFFFF
    return ((be & 0xFF) << 8) | (be >> 8)


@dataclass(frozen=True)
class Placement:
    """Where the tags of one route table went: slot per tag (in order), seed, probe bound."""

    positions: list[int]
    seed: int
    probes: int


class SlotTable:
    """mplex_routes (mmapped) and mplex_route_ctr of one program."""

    def __init__(self, slots: bpfsys.Map, counters: bpfsys.Map) -> None:
        self.map, self.ctr = slots, counters
        self.nslots = slots.info.max_entries
        self.bits = (self.nslots - C.ROUTE_PROBES_MAX).bit_length() - 1
        self.nctr = counters.info.max_entries
        size = self.nslots * SLOT_SIZE
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        self.mm = mmap.mmap(slots.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.words = memoryview(self.mm).cast("Q")

    def close(self) -> None:
        self.words.release()
        self.mm.close()

    # --- reading ----------------------------------------------------------------------------
    def keys(self) -> array[int]:
        """The key word of every slot (a copy)."""
        return array("H", self.mm[: self.nslots * SLOT_SIZE])[5::8]

    def live(self) -> list[int]:
        """Slot indexes of the live routes, in slot order."""
        return [i for i, k in enumerate(self.keys()) if k != EMPTY and k != TOMB]

    def find(self, key: int, tag: int, seed: int) -> int | None:
        """Slot of the live route (key, tag), searching as the data plane does (no bound
        but ROUTE_PROBES_MAX): None when absent."""
        (home,) = homes([tag], seed, self.bits)
        for at in range(home, home + C.ROUTE_PROBES_MAX):
            w = self.words[2 * at + 1]
            k = (w >> C.SLOT_KEY_SHIFT) & KEY_MASK
            if k == EMPTY:
                return None
            if k == key and self.words[2 * at] == tag:
                return at
        return None

    def scan(self, key: int, tag: int) -> int | None:
        """Slot of the live route (key, tag) wherever it lies (its table's seed unknown): one
        pass over the whole table."""
        w = self.words
        return next((i for i in self.live() if w[2 * i] == tag and self.key_at(i) == key), None)

    def key_at(self, i: int) -> int:
        return (self.words[2 * i + 1] >> C.SLOT_KEY_SHIFT) & KEY_MASK

    def index(self) -> dict[tuple[int, int], int]:
        """(key, tag) -> slot of every live route (the first slot, should two hold one): one
        pass over the whole table, for a batch of routes whose tables' seeds are unknown."""
        tags = self.words[0::2].tolist()
        out: dict[tuple[int, int], int] = {}
        for i, k in enumerate(self.keys()):
            if k != EMPTY and k != TOMB:
                out.setdefault((k, tags[i]), i)
        return out

    def used_counters(self) -> set[int]:
        raw = array("I", self.mm[: self.nslots * SLOT_SIZE])
        keys = self.keys()
        ctrs = raw[3::4]
        return {c for c, k in zip(ctrs, keys, strict=True) if k != EMPTY and k != TOMB}

    def free_counters(self, n: int) -> list[int]:
        """n counter indexes no live route holds (in order)."""
        used = self.used_counters()
        out = []
        for i in range(self.nctr):
            if i not in used:
                out.append(i)
                if len(out) == n:
                    return out
        raise KernelError(
            f"route counters full: {self.nctr} indexes (limits.routes = {self.nctr // 2})"
        )

    # --- placing ----------------------------------------------------------------------------
    def taken(self) -> bytearray:
        """Per slot, 1 when it holds a live route (EMPTY and TOMBSTONE slots are free):
        computed on the whole table at once, as big integers."""
        raw = self.mm[: self.nslots * SLOT_SIZE]
        lo, hi = raw[10::16], raw[11::16]  # the key word's two bytes, per slot
        nonzero = bytes([0] + [1] * 255)
        ff = bytes([0] * 255 + [1])

        def num(b: bytes) -> int:
            return int.from_bytes(b, "little")

        live = (num(lo.translate(nonzero)) | num(hi.translate(nonzero))) & ~(
            num(lo.translate(ff)) & num(hi.translate(ff))
        )
        return bytearray(live.to_bytes(self.nslots, "little"))

    def place(self, words: list[int], seed: int | None = None) -> Placement:
        """Slots for the tag words of a new table (EMPTY or TOMBSTONE slots, first fit from
        each home). A fresh random seed per try; ROUTE_SEED_TRIES tries, then an error."""
        free = self.taken()
        limit = C.ROUTE_PROBES_MAX
        for _ in range(C.ROUTE_SEED_TRIES):
            s = new_seed() if seed is None else seed
            taken = bytearray(free)
            find = taken.find
            positions: list[int] = []
            add = positions.append
            hs = homes(words, s, self.bits)
            for h in hs:
                if not taken[h]:
                    taken[h] = 1
                    add(h)
                    continue
                at = find(0, h, h + limit)
                if at < 0:
                    break
                taken[at] = 1
                add(at)
            else:
                worst = max(map(int.__sub__, positions, hs), default=0)
                return Placement(positions, s, worst + 1)
            if seed is not None:
                break
        raise KernelError(
            f"route table: {len(words)} routes do not fit within {C.ROUTE_PROBES_MAX} probes "
            f"({self.nslots} slots)"
        )

    def place_one(self, tag: int, seed: int) -> tuple[int, int] | None:
        """(slot, displacement) for one more tag under `seed`, or None (no free slot within
        ROUTE_PROBES_MAX: the caller swaps the table instead)."""
        (home,) = homes([tag], seed, self.bits)
        for d in range(C.ROUTE_PROBES_MAX):
            k = (self.words[2 * (home + d) + 1] >> C.SLOT_KEY_SHIFT) & KEY_MASK
            if k in (EMPTY, TOMB):
                return home + d, d
        return None

    # --- writing ----------------------------------------------------------------------------
    def write(
        self, key: int, slots: list[int], words: list[int], ports: list[int], ctrs: list[int]
    ) -> None:
        """Make routes live: every tag first, then every word 1 (stores stay in order)."""
        w = self.words
        for at, t in zip(slots, words, strict=True):
            w[2 * at] = t
        be = array("H", ports)
        be.byteswap()  # network byte order
        k = key << C.SLOT_KEY_SHIFT
        sh = C.SLOT_CTR_SHIFT
        for at, p, c in zip(slots, be, ctrs, strict=True):
            w[2 * at + 1] = p | k | c << sh

    def add(self, key: int, at: int, tag: int, port: int, ctr: int | None = None) -> int:
        """One route into the free slot `at`; returns its counter index: a free one, zeroed
        (or `ctr`, which the caller guarantees is free and not the slot's last one)."""
        last = self.words[2 * at + 1] >> C.SLOT_CTR_SHIFT
        if ctr is None:
            ctr = next(c for c in self.free_counters(2) if c != last)
            self.zero_counters([ctr])
        assert ctr != last, "a re-used slot needs another counter index"
        self.words[2 * at] = tag
        self.words[2 * at + 1] = word1(port, key, ctr)
        return ctr

    def retarget(self, at: int, port: int) -> None:
        w = self.words[2 * at + 1]
        self.words[2 * at + 1] = (w & ~0xFFFF) | (word1(port, 0, 0) & 0xFFFF)

    def tombstone(self, slots: Iterable[int]) -> None:
        for at in slots:
            w = self.words[2 * at + 1]
            self.words[2 * at + 1] = (w & ~(KEY_MASK << C.SLOT_KEY_SHIFT)) | (
                TOMB << C.SLOT_KEY_SHIFT
            )

    def sweep(self, seeds: Mapping[int, int]) -> int:
        """Turn TOMBSTONEs into EMPTY slots where no live route's probe path crosses them.
        `seeds`: key word -> seed of every live key (a live route of any other key keeps
        every TOMBSTONE: its path is unknown). Returns the slots freed."""
        keys = self.keys()
        live = [i for i, k in enumerate(keys) if k != EMPTY and k != TOMB]
        by_key: dict[int, list[int]] = {}
        for i in live:
            by_key.setdefault(keys[i], []).append(i)
        if not by_key.keys() <= seeds.keys():
            return 0
        covered = bytearray(self.nslots)
        for key, at in by_key.items():
            for h, p in zip(
                homes([self.words[2 * i] for i in at], seeds[key], self.bits), at, strict=True
            ):
                covered[h:p] = b"\1" * (p - h)
        freed = 0
        for i, k in enumerate(keys):
            if k == TOMB and not covered[i]:
                self.words[2 * i + 1] = 0
                freed += 1
        return freed

    # --- counters ---------------------------------------------------------------------------
    def zero_counters(self, indexes: list[int]) -> None:
        if indexes:
            keys = array("I", indexes).tobytes()
            self.ctr.update_batch_raw(len(indexes), keys, bytes(len(indexes) * self.ctr.buf_size))

    def write_counters(self, index: int, per_cpu: list[tuple[int, int]]) -> None:
        vals = b"".join(layout.COUNTER.pack(p, b).ljust(self.ctr.stride, b"\0") for p, b in per_cpu)
        self.ctr.update(layout.U32.pack(index), vals)

    def counters(self) -> dict[int, list[tuple[int, int]]]:
        """counter index -> per-CPU (packets, bytes), of the indexes live routes hold."""
        used = self.used_counters()
        count, keys, vals = self.ctr.dump_raw()
        idx = array("I", keys[: count * 4])
        out = {}
        bs, st = self.ctr.buf_size, self.ctr.stride
        for n, i in enumerate(idx):
            if i in used:
                buf = vals[n * bs : (n + 1) * bs]
                out[i] = [layout.COUNTER.unpack_from(buf, c * st) for c in range(self.ctr.ncpu)]
        return out
