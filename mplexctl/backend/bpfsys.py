"""The bpf(2) syscall, through ctypes: maps by fd or id, program info, test runs, pins.

BCC compiles and loads; everything after that (a later process finding the program from
its id, reading and updating its maps) goes through here, so no pin is ever required.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass
from functools import cache

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# enum bpf_cmd
MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM = 1, 2
OBJ_PIN, PROG_TEST_RUN = 6, 10
PROG_GET_FD_BY_ID, MAP_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 13, 14, 15
MAP_LOOKUP_BATCH, MAP_UPDATE_BATCH, MAP_DELETE_BATCH = 24, 26, 27
PROG_BIND_MAP = 35

# enum bpf_map_type: per-CPU hash, per-CPU array, per-CPU cgroup storage
PERCPU_TYPES = frozenset({5, 6, 10})

BPF_ANY = 0


class BpfError(OSError):
    """A bpf(2) call failed; `op` names what was attempted."""

    def __init__(self, err: int, op: str) -> None:
        super().__init__(err, f"{op}: {os.strerror(err)}")
        self.op = op


def sys_bpf(cmd: int, attr: bytes, op: str) -> tuple[int, ctypes.Array[ctypes.c_char]]:
    buf = ctypes.create_string_buffer(attr, max(len(attr), 128))
    ret = _libc.syscall(_NR_BPF, cmd, buf, len(buf))
    if ret < 0:
        raise BpfError(ctypes.get_errno(), op)
    return int(ret), buf


@cache
def possible_cpus() -> int:
    """Number of possible CPUs: the stride of per-CPU map values."""
    with open("/sys/devices/system/cpu/possible", encoding="ascii") as fh:
        total = 0
        for part in fh.read().strip().split(","):
            lo, _, hi = part.partition("-")
            total += int(hi or lo) - int(lo) + 1
    return total


@dataclass
class MapInfo:
    id: int
    type: int
    key_size: int
    value_size: int
    max_entries: int
    name: str


@dataclass
class ProgInfo:
    id: int
    type: int
    name: str
    tag: str
    map_ids: list[int]
    load_time_ns: int


def _info(fd: int, size: int) -> bytes:
    info = ctypes.create_string_buffer(size)
    sys_bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, size, ctypes.addressof(info)), "info")
    return info.raw


def map_info(fd: int) -> MapInfo:
    raw = _info(fd, 88)
    type_, id_, ks, vs, me, _flags = struct.unpack_from("<6I", raw)
    name = raw[24:40].split(b"\0", 1)[0].decode(errors="replace")
    return MapInfo(id_, type_, ks, vs, me, name)


def prog_info(fd: int, max_maps: int = 64) -> ProgInfo:
    ids = ctypes.create_string_buffer(4 * max_maps)
    info = bytearray(224)
    struct.pack_into("<I", info, 52, max_maps)
    struct.pack_into("<Q", info, 56, ctypes.addressof(ids))
    buf = ctypes.create_string_buffer(bytes(info), len(info))
    attr = struct.pack("<IIQ", fd, len(info), ctypes.addressof(buf))
    sys_bpf(OBJ_GET_INFO_BY_FD, attr, "program info")
    raw = buf.raw
    type_, id_ = struct.unpack_from("<II", raw)
    nr_maps = struct.unpack_from("<I", raw, 52)[0]
    name = raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
    map_ids = list(struct.unpack_from(f"<{min(nr_maps, max_maps)}I", ids.raw))
    return ProgInfo(
        id_, type_, name, raw[8:16].hex(), map_ids, struct.unpack_from("<Q", raw, 40)[0]
    )


def prog_fd_by_id(prog_id: int) -> int:
    return sys_bpf(PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0), f"program {prog_id}")[0]


def map_fd_by_id(map_id: int) -> int:
    return sys_bpf(MAP_GET_FD_BY_ID, struct.pack("<III", map_id, 0, 0), f"map {map_id}")[0]


def prog_bind_map(prog_fd: int, map_fd: int) -> None:
    sys_bpf(PROG_BIND_MAP, struct.pack("<III", prog_fd, map_fd, 0), "bind map to program")


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(path.encode())
    sys_bpf(OBJ_PIN, struct.pack("<QII", ctypes.addressof(p), fd, 0), f"pin {path}")


@dataclass
class TestRun:
    retval: int
    data: bytes
    duration_ns: int


def prog_test_run(prog_fd: int, data: bytes, repeat: int = 1) -> TestRun:
    """BPF_PROG_TEST_RUN: run the program on one frame; returns verdict and output frame."""
    data_in = ctypes.create_string_buffer(data, max(len(data), 1))
    out_size = len(data) + 512
    data_out = ctypes.create_string_buffer(out_size)
    attr = struct.pack(
        "<IIIIQQII",
        prog_fd,
        0,
        len(data),
        out_size,
        ctypes.addressof(data_in),
        ctypes.addressof(data_out),
        repeat,
        0,
    )
    _, buf = sys_bpf(PROG_TEST_RUN, attr, "test run")
    _fd, retval, _size_in, size_out, _a, _b, _rep, duration = struct.unpack_from(
        "<IIIIQQII", buf.raw
    )
    return TestRun(retval, data_out.raw[:size_out], duration)


class Map:
    """A BPF map held by fd. Values of per-CPU maps are lists with one bytes per CPU."""

    def __init__(self, fd: int, info: MapInfo | None = None, owned: bool = True) -> None:
        self.fd = fd
        self.info = info or map_info(fd)
        self.owned = owned
        self.percpu = self.info.type in PERCPU_TYPES
        self.stride = (self.info.value_size + 7) // 8 * 8
        self.ncpu = possible_cpus() if self.percpu else 1
        self.buf_size = self.stride * self.ncpu if self.percpu else self.info.value_size

    @classmethod
    def from_id(cls, map_id: int) -> Map:
        return cls(map_fd_by_id(map_id))

    @property
    def name(self) -> str:
        return self.info.name

    def close(self) -> None:
        if self.owned and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _op(self, what: str) -> str:
        return f"{what} in map {self.name}"

    def _elem(
        self, cmd: int, key: bytes, value: ctypes.Array[ctypes.c_char], flags: int, what: str
    ) -> None:
        k = ctypes.create_string_buffer(key, len(key))
        attr = struct.pack(
            "<IIQQQ", self.fd, 0, ctypes.addressof(k), ctypes.addressof(value), flags
        )
        sys_bpf(cmd, attr, self._op(what))

    def lookup(self, key: bytes) -> bytes | None:
        v = ctypes.create_string_buffer(self.buf_size)
        try:
            self._elem(MAP_LOOKUP_ELEM, key, v, 0, "lookup")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return v.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._elem(
            MAP_UPDATE_ELEM, key, ctypes.create_string_buffer(value, len(value)), flags, "update"
        )

    def per_cpu(self, raw: bytes) -> list[bytes]:
        vs = self.info.value_size
        return [raw[i * self.stride : i * self.stride + vs] for i in range(self.ncpu)]

    def replicate(self, value: bytes) -> bytes:
        """A per-CPU buffer holding the same value on every CPU."""
        return value.ljust(self.stride, b"\0") * self.ncpu if self.percpu else value

    def dump(self) -> dict[bytes, bytes]:
        """Every entry (raw value buffers), with batched lookups."""
        count, keys, vals = self.dump_raw()
        ks, bs = self.info.key_size, self.buf_size
        return {keys[i * ks : (i + 1) * ks]: vals[i * bs : (i + 1) * bs] for i in range(count)}

    def dump_raw(self) -> tuple[int, bytes, bytes]:
        """(count, keys, values): every entry, keys and raw value buffers packed back to back
        in the same order, read with batched lookups (one syscall per max_entries)."""
        ks = self.info.key_size
        n = max(self.info.max_entries, 1)
        keys = ctypes.create_string_buffer(ks * n)
        vals = ctypes.create_string_buffer(self.buf_size * n)
        token_in = ctypes.create_string_buffer(8)
        token_out = ctypes.create_string_buffer(8)
        key_parts: list[bytes] = []
        val_parts: list[bytes] = []
        total = 0
        first = True
        while True:
            attr = struct.pack(
                "<QQQQIIQQ",
                0 if first else ctypes.addressof(token_in),
                ctypes.addressof(token_out),
                ctypes.addressof(keys),
                ctypes.addressof(vals),
                n,
                self.fd,
                0,
                0,
            )
            buf = ctypes.create_string_buffer(attr, 128)
            ret = _libc.syscall(_NR_BPF, MAP_LOOKUP_BATCH, buf, 128)
            err = ctypes.get_errno() if ret < 0 else 0
            if ret < 0 and err != errno.ENOENT:
                raise BpfError(err, self._op("dump"))
            count = struct.unpack_from("<I", buf.raw, 32)[0]
            key_parts.append(ctypes.string_at(keys, count * ks))
            val_parts.append(ctypes.string_at(vals, count * self.buf_size))
            total += count
            if err == errno.ENOENT or count == 0:
                return total, b"".join(key_parts), b"".join(val_parts)
            ctypes.memmove(token_in, token_out, 8)
            first = False

    def update_batch(self, items: list[tuple[bytes, bytes]]) -> None:
        if items:
            self.update_batch_raw(
                len(items), b"".join(k for k, _ in items), b"".join(v for _, v in items)
            )

    def update_batch_raw(self, count: int, keys: bytes, vals: bytes) -> None:
        """Write `count` entries whose keys and value buffers are packed back to back."""
        if not count:
            return
        kb = ctypes.create_string_buffer(keys, len(keys))
        vb = ctypes.create_string_buffer(vals, len(vals))
        attr = struct.pack(
            "<QQQQIIQQ", 0, 0, ctypes.addressof(kb), ctypes.addressof(vb), count, self.fd, 0, 0
        )
        sys_bpf(MAP_UPDATE_BATCH, attr, self._op(f"update of {count} entries"))

    def delete_batch(self, keys: list[bytes]) -> None:
        self.delete_batch_raw(len(keys), b"".join(keys))

    def delete_batch_raw(self, count: int, keys: bytes) -> None:
        """Delete `count` entries whose keys are packed back to back."""
        if not count:
            return
        kb = ctypes.create_string_buffer(keys, len(keys))
        attr = struct.pack("<QQQQIIQQ", 0, 0, ctypes.addressof(kb), 0, count, self.fd, 0, 0)
        sys_bpf(MAP_DELETE_BATCH, attr, self._op(f"delete of {count} entries"))
