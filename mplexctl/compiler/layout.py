"""Byte layouts of map keys and values, derived from the shared layouts in constants."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from mplexctl import constants as C

_FMT = {"__u8": "B", "__u16": "H", "__be16": "H", "__u32": "I", "__u64": "Q"}


def fmt(layout: C.Layout) -> str:
    return "<" + "".join((f"{n}s" if t == "__u8" and n > 1 else _FMT[t] * n) for t, _f, n in layout)


SVC_HEAD = struct.Struct(fmt(C.LAYOUT_SVC_HEAD))
# The service row head of layouts 1 and 2 (no probe bound, no seed): read and written only
# for programs of a previous release.
SVC_HEAD_HASHED = struct.Struct("<HBBBBH")
WINDOW = struct.Struct(fmt(C.LAYOUT_WINDOW))
ROUTE_KEY = struct.Struct(fmt(C.LAYOUT_ROUTE_KEY))
ROUTE = struct.Struct(fmt(C.LAYOUT_ROUTE))
COUNTER = struct.Struct(fmt(C.LAYOUT_COUNTER))
META = struct.Struct(fmt(C.LAYOUT_META))
SVC_INFO = struct.Struct(fmt(C.LAYOUT_SVC_INFO))
FLOW_KEY = struct.Struct(fmt(C.LAYOUT_FLOW_KEY))
FLOW = struct.Struct(fmt(C.LAYOUT_FLOW))
U32 = struct.Struct("<I")


def _encoding(name: str) -> Callable[..., int]:
    """The Python function of constants.ENCODINGS[name] (the C side is its macro)."""
    params, expr = C.ENCODINGS[name]
    fn: Callable[..., int] = eval(f"lambda {', '.join(params)}: {expr}", {})
    fn.__name__ = name.lower()
    return fn


route_prefix = _encoding("ROUTE_PREFIX")  # (svc, slot) -> u32 prefix of a route key
route_prefix_svc = _encoding("ROUTE_PREFIX_SVC")  # prefix -> svc
route_prefix_slot = _encoding("ROUTE_PREFIX_SLOT")  # prefix -> slot
route_slot_key = _encoding("ROUTE_SLOT_KEY")  # prefix -> key word of its route slots
svc_row = _encoding("SVC_ROW")  # (svc, which) -> row of mplex_svcs
stats_row = _encoding("STATS_ROW")  # (ifslot, svc, verdict, nsvc) -> row of mplex_svc_stats


def svc_value_size(max_windows: int) -> int:
    return SVC_HEAD.size + WINDOW.size * max_windows


def pack_svc(
    tag_off: int,
    tag_len: int,
    flags: int,
    windows: list[tuple[int, int]],
    slot: int,
    max_windows: int,
    probes: int = 0,
    seed: int = 0,
    hashed: bool = False,
) -> bytes:
    """A service row; `hashed`: in a layout-1/2 program's format (routes in a hash)."""
    if hashed:
        head = SVC_HEAD_HASHED.pack(tag_off, tag_len, flags, len(windows), slot, 0)
    else:
        head = SVC_HEAD.pack(tag_off, tag_len, flags, len(windows), slot, probes, 0, seed)
    body = b"".join(WINDOW.pack(lo, hi) for lo, hi in windows)
    return head + body + bytes(WINDOW.size * (max_windows - len(windows)))


class SvcRow(NamedTuple):
    tag_off: int
    tag_len: int
    flags: int
    slot: int
    windows: tuple[tuple[int, int], ...]
    probes: int = 0
    seed: int = 0


def unpack_svc(raw: bytes, hashed: bool = False) -> SvcRow:
    if not raw:
        return SvcRow(0, 0, 0, 0, ())
    probes = seed = 0
    if hashed:
        tag_off, tag_len, flags, nwin, slot, _ = SVC_HEAD_HASHED.unpack_from(raw)
        head = SVC_HEAD_HASHED
    else:
        tag_off, tag_len, flags, nwin, slot, probes, _, seed = SVC_HEAD.unpack_from(raw)
        head = SVC_HEAD
    wins: list[tuple[int, int]] = []
    for i in range(nwin):
        lo, hi = WINDOW.unpack_from(raw, head.size + i * WINDOW.size)
        wins.append((lo, hi))
    return SvcRow(tag_off, tag_len, flags, slot, tuple(wins), probes, seed)


def route_key(svc_index: int, slot: int, tag: bytes) -> bytes:
    return ROUTE_KEY.pack(route_prefix(svc_index, slot), tag.ljust(C.TAG_MAX_LEN, b"\0"))


def split_route_key(raw: bytes) -> tuple[int, int, bytes]:
    svc_slot, tag = ROUTE_KEY.unpack(raw)
    return route_prefix_svc(svc_slot), route_prefix_slot(svc_slot), tag


def route_value(port: int, packets: int = 0, nbytes: int = 0) -> bytes:
    # port is stored in network byte order (__be16): pack big-endian into the u16 slot.
    be_port = int.from_bytes(port.to_bytes(2, "big"), "little")
    return ROUTE.pack(be_port, 0, 0, packets, nbytes)


def route_port(raw: bytes) -> int:
    return int.from_bytes(raw[:2], "big")


def pack_svc_info(name: str, proto: int, port: int) -> bytes:
    return SVC_INFO.pack(name.encode().ljust(C.SVC_NAME_LEN, b"\0"), proto, 0, port, 0)


def unpack_svc_info(raw: bytes) -> tuple[str, int, int]:
    name, proto, _pad, port, _pad2 = SVC_INFO.unpack(raw)
    return name.rstrip(b"\0").decode(errors="replace"), proto, port
