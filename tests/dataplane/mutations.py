"""Mutations of a built, valid frame: each bends one field or cuts the frame somewhere.

Each takes (rng, frame) and returns the mutated bytes, or None when it does not apply.
Checksums are left as they were: the contract's rewrite is incremental, whatever they hold.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from . import packets as P
from .packets import Frame

Mutation = Callable[[random.Random, Frame], bytes | None]


def _copy(f: Frame) -> Frame:
    return Frame(bytearray(f.data), f.spec, f.l3, f.l4, f.payload, f.ip_end, f.ext_offsets)


def boundaries(f: Frame) -> list[int]:
    """Offsets where a header starts or ends, and a few inside headers."""
    out = [0, 1, 12, 13, 14, *(14 + 4 * i + k for i in range(len(f.spec.tpids)) for k in (2, 4))]
    out += [f.l3, f.l3 + 1, f.l3 + 10, f.l3 + 19, f.l3 + 20, f.l3 + 39, f.l3 + 40]
    for e in f.ext_offsets:
        out += [e, e + 1, e + 2, e + 7, e + 8]
    out += [
        f.l4 - 1,
        f.l4,
        f.l4 + 1,
        f.l4 + 2,
        f.l4 + 3,
        f.l4 + 4,
        f.l4 + 7,
        f.l4 + 8,
        f.l4 + 12,
        f.l4 + 13,
        f.l4 + 17,
        f.l4 + 19,
        f.l4 + 20,
        f.payload - 1,
        f.payload,
        f.payload + 1,
        f.ip_end - 1,
        f.ip_end,
    ]
    return sorted({o for o in out if 0 <= o < len(f.data)})


def trunc_boundary(rng: random.Random, f: Frame) -> bytes | None:
    cut = rng.choice(boundaries(f)) + rng.choice([-1, 0, 0, 1])
    return f.bytes()[: max(0, cut)] if cut < len(f.data) else None


def trunc_random(rng: random.Random, f: Frame) -> bytes | None:
    return f.bytes()[: rng.randint(14, len(f.data) - 1)] if len(f.data) > 15 else None


def _set_ip_len(f: Frame, ip_len: int) -> bytes:
    g = _copy(f)
    if f.spec.version == 4:
        g.set_u16(f.l3 + 2, ip_len)
    else:
        g.set_u16(f.l3 + 4, ip_len - 40)
    return g.bytes()


def _ip_len(f: Frame) -> int:
    return f.ip_end - f.l3


def ip_len_long(rng: random.Random, f: Frame) -> bytes | None:
    avail = len(f.data) - f.l3
    low = 0 if f.spec.version == 4 else 40
    new = rng.choice(
        [
            avail + 1,
            avail + 2,
            avail + rng.randint(1, 64),
            low + 0xFFFF,
            rng.randint(avail + 1, low + 0xFFFF),
        ]
    )
    return _set_ip_len(f, new)


def ip_len_short(rng: random.Random, f: Frame) -> bytes | None:
    """An IP length below the header length (IPv4 IHL*4, IPv6 40 + extension headers)."""
    hdr = f.l4 - f.l3
    low = 0 if f.spec.version == 4 else 40
    if hdr <= low:
        return None
    return _set_ip_len(f, rng.randint(low, hdr - 1))


def ip_len_off(rng: random.Random, f: Frame) -> bytes | None:
    """A few bytes off: into the padding, or short of the real packet."""
    delta = rng.choice([-1, 1, rng.randint(-12, 12), -(f.ip_end - f.l4)])
    new = _ip_len(f) + delta
    return _set_ip_len(f, new) if delta and new >= 0 else None


def udp_len(rng: random.Random, f: Frame) -> bytes | None:
    if f.spec.proto != P.UDP:
        return None
    real = f.ip_end - f.l4
    g = _copy(f)
    g.set_u16(f.l4 + 4, rng.choice([0, 7, 8, real - 1, real + 1, rng.randrange(1 << 16)]))
    return g.bytes() if g.data != f.data else None


def tcp_doff(rng: random.Random, f: Frame) -> bytes | None:
    if f.spec.proto != P.TCP:
        return None
    ip_payload = f.ip_end - f.l4
    g = _copy(f)
    past = ip_payload // 4 + 1
    doff = rng.choice([rng.randint(0, 4), past if past <= 15 else 4, rng.randint(0, 15)])
    g.data[f.l4 + 12] = (doff << 4) | (f.data[f.l4 + 12] & 0x0F)
    return g.bytes()


def ext_long(rng: random.Random, f: Frame) -> bytes | None:
    """An extension header (0/43/60) longer than intended: into the payload or past the frame."""
    exts = [(o, e) for o, e in zip(f.ext_offsets, f.spec.exts, strict=True) if e.kind != P.FRAGMENT]
    if not exts:
        return None
    off, e = rng.choice(exts)
    g = _copy(f)
    g.data[off + 1] = rng.choice([e.units + 1, e.units + 2, 255, rng.randrange(256)]) & 0xFF
    return g.bytes()


def ihl(rng: random.Random, f: Frame) -> bytes | None:
    if f.spec.version != 4:
        return None
    g = _copy(f)
    value = rng.choice([rng.randint(0, 4), rng.randint(5, 15)])
    g.data[f.l3] = 0x40 | value
    return g.bytes() if g.data != f.data else None


def version(rng: random.Random, f: Frame) -> bytes | None:
    g = _copy(f)
    v = rng.choice([n for n in range(16) if n != f.spec.version])
    g.data[f.l3] = (v << 4) | (f.data[f.l3] & 0x0F)
    return g.bytes()


def ethertype_swap(rng: random.Random, f: Frame) -> bytes | None:
    g = _copy(f)
    g.set_u16(f.l3 - 2, P.ETH_P_IPV6 if f.spec.version == 4 else P.ETH_P_IPV4)
    return g.bytes()


def flip(rng: random.Random, f: Frame) -> bytes | None:
    """Corrupt one byte of the headers or the start of the payload."""
    end = min(len(f.data), f.payload + 24)
    g = _copy(f)
    g.data[rng.randrange(12, end)] ^= rng.randint(1, 255)
    return g.bytes()


def checksum(rng: random.Random, f: Frame) -> bytes | None:
    if f.spec.proto not in (P.UDP, P.TCP):
        return None
    g = _copy(f)
    g.set_u16(f.csum_off, rng.choice([0, 0xFFFF, 1, 0xFFFE, rng.randrange(1 << 16)]))
    return g.bytes()


def proto_swap(rng: random.Random, f: Frame) -> bytes | None:
    """Change the IP protocol (or the last next-header) without touching the L4 bytes."""
    g = _copy(f)
    at = f.l3 + 9 if f.spec.version == 4 else (f.ext_offsets[-1] if f.ext_offsets else f.l3 + 6)
    g.data[at] = rng.choice([P.UDP, P.TCP, P.ICMP, rng.randrange(256)])
    return g.bytes() if g.data != f.data else None


def dport(rng: random.Random, f: Frame) -> bytes | None:
    g = _copy(f)
    g.set_u16(f.l4 + 2, f.u16(f.l4 + 2) ^ (1 << rng.randrange(16)))
    return g.bytes()


MUTATIONS: list[tuple[str, Mutation]] = [
    ("trunc-boundary", trunc_boundary),
    ("trunc-boundary", trunc_boundary),
    ("trunc-random", trunc_random),
    ("ip-len-long", ip_len_long),
    ("ip-len-short", ip_len_short),
    ("ip-len-off", ip_len_off),
    ("udp-len", udp_len),
    ("udp-len", udp_len),
    ("tcp-doff", tcp_doff),
    ("tcp-doff", tcp_doff),
    ("ext-long", ext_long),
    ("ihl", ihl),
    ("version", version),
    ("ethertype-swap", ethertype_swap),
    ("flip", flip),
    ("checksum", checksum),
    ("proto-swap", proto_swap),
    ("dport", dport),
]
