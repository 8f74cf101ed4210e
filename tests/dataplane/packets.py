"""Frame building blocks: headers, Internet checksums, and a built frame that knows its layout.

Independent of model.py: the generators build well-formed frames with correct checksums here,
and the model's rewrite is checked against `l4_checksum`, a full recomputation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tests.support.frames import DST_MAC, SRC_MAC, ones_sum

ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_ARP = 0x0806
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
TPIDS = (ETH_P_8021Q, ETH_P_8021AD)
ICMP, TCP, UDP, ICMPV6, NO_NEXT = 1, 6, 17, 58, 59
HOP, ROUTING, FRAGMENT, DSTOPTS = 0, 43, 44, 60
IPV4_DF, IPV4_MF, IPV4_RESERVED = 0x4000, 0x2000, 0x8000

MAC_DST, MAC_SRC = DST_MAC, SRC_MAC


@dataclass(frozen=True)
class Ext:
    """An IPv6 extension header to build: kind 0/43/60 with `units` (hdr ext len), or 44."""

    kind: int
    units: int = 0  # length is (units + 1) * 8 for 0/43/60
    frag: int = 0  # for 44: the offset/flags word (offset << 3 | M)

    @property
    def size(self) -> int:
        return 8 if self.kind == FRAGMENT else (self.units + 1) * 8

    def render(self, nexthdr: int, fill: int) -> bytes:
        if self.kind == FRAGMENT:
            return struct.pack("!BBHI", nexthdr, 0, self.frag, 0x1234ABCD)
        return bytes([nexthdr, self.units]) + bytes([fill & 0xFF]) * (self.size - 2)


@dataclass(frozen=True)
class Spec:
    """Everything needed to build one frame; lengths and checksums are derived and correct."""

    version: int = 4
    proto: int = UDP
    sport: int = 40000
    dport: int = 5000
    payload: bytes = b""
    tpids: tuple[int, ...] = ()  # VLAN tag protocol ids, outermost first
    ethertype: int | None = None  # override the L3 ethertype
    ipv4_opt_words: int = 0  # 0..10 option words (IHL = 5 + words)
    ipv4_frag: int = 0  # the flags/fragment-offset word
    exts: tuple[Ext, ...] = ()
    tcp_doff: int = 5
    udp_zero_csum: bool = False
    padding: bytes = b""  # Ethernet padding after the IP packet
    src4: bytes = bytes([192, 0, 2, 1])
    dst4: bytes = bytes([198, 51, 100, 7])
    src6: bytes = bytes.fromhex("20010db8000000000000000000000001")
    dst6: bytes = bytes.fromhex("20010db80000000000000000000000fe")


@dataclass
class Frame:
    """A built frame and where its parts are (offsets from the frame start)."""

    data: bytearray
    spec: Spec
    l3: int
    l4: int
    payload: int
    ip_end: int
    ext_offsets: tuple[int, ...]

    @property
    def l4_len(self) -> int:
        return self.ip_end - self.l4

    @property
    def csum_off(self) -> int:
        return self.l4 + (6 if self.spec.proto == UDP else 16)

    def u16(self, off: int) -> int:
        return int.from_bytes(self.data[off : off + 2], "big")

    def set_u16(self, off: int, value: int) -> None:
        self.data[off : off + 2] = (value & 0xFFFF).to_bytes(2, "big")

    def bytes(self) -> bytes:
        return bytes(self.data)


def pseudo_header(spec: Spec, l4_len: int) -> bytes:
    if spec.version == 4:
        return spec.src4 + spec.dst4 + struct.pack("!BBH", 0, spec.proto, l4_len & 0xFFFF)
    return spec.src6 + spec.dst6 + struct.pack("!I3xB", l4_len, spec.proto)


def l4_checksum(spec: Spec, l4: bytes, csum_at: int) -> int:
    """Full recomputation of a UDP/TCP checksum over pseudo-header + segment (field zeroed)."""
    seg = l4[:csum_at] + b"\0\0" + l4[csum_at + 2 :]
    c = ~ones_sum(pseudo_header(spec, len(l4)) + seg) & 0xFFFF
    if spec.proto == UDP and c == 0:
        return 0xFFFF
    return c


def _l4_segment(spec: Spec) -> tuple[bytes, int]:
    """The L4 header + payload (checksum filled in) and the L4 header length."""
    if spec.proto == UDP:
        hdr = struct.pack("!HHHH", spec.sport, spec.dport, 8 + len(spec.payload), 0)
        seg = hdr + spec.payload
        if not spec.udp_zero_csum:
            seg = seg[:6] + l4_checksum(spec, seg, 6).to_bytes(2, "big") + seg[8:]
        return seg, 8
    if spec.proto == TCP:
        opts = bytes([1] * (spec.tcp_doff * 4 - 20))  # NOPs
        hdr = struct.pack(
            "!HHIIBBHHH",
            spec.sport,
            spec.dport,
            0x01020304,
            0,
            spec.tcp_doff << 4,
            0x18,
            0xFFFF,
            0,
            0,
        )
        seg = hdr + opts + spec.payload
        seg = seg[:16] + l4_checksum(spec, seg, 16).to_bytes(2, "big") + seg[18:]
        return seg, spec.tcp_doff * 4
    return struct.pack("!HH", spec.sport, spec.dport) + spec.payload, 4


def _ipv4_header(spec: Spec, l4_len: int) -> bytes:
    opts = bytes([1] * (spec.ipv4_opt_words * 4 - 1)) + b"\0" if spec.ipv4_opt_words else b""
    ihl = 5 + spec.ipv4_opt_words
    hdr = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + l4_len,
            0x4242,
            spec.ipv4_frag,
            64,
            spec.proto,
            0,
            spec.src4,
            spec.dst4,
        )
        + opts
    )
    csum = ~ones_sum(hdr) & 0xFFFF
    return hdr[:10] + csum.to_bytes(2, "big") + hdr[12:]


def build(spec: Spec) -> Frame:
    seg, l4_hlen = _l4_segment(spec)
    ethertype = spec.ethertype
    if ethertype is None:
        ethertype = ETH_P_IPV4 if spec.version == 4 else ETH_P_IPV6
    eth = MAC_DST + MAC_SRC
    for i, tpid in enumerate(spec.tpids):
        eth += struct.pack("!H", tpid) + struct.pack("!H", 100 + i)  # TPID, then TCI
    eth += struct.pack("!H", ethertype)
    l3 = len(eth)
    ext_offsets: list[int] = []
    if spec.version == 4:
        ip = _ipv4_header(spec, len(seg))
    else:
        kinds = [e.kind for e in spec.exts] + [spec.proto]
        exts = b""
        for i, e in enumerate(spec.exts):
            ext_offsets.append(l3 + 40 + len(exts))
            exts += e.render(kinds[i + 1], i)
        ip = (
            struct.pack(
                "!IHBB16s16s", 0x60000000, len(exts) + len(seg), kinds[0], 64, spec.src6, spec.dst6
            )
            + exts
        )
    l4 = l3 + len(ip)
    data = bytearray(eth + ip + seg + spec.padding)
    ip_end = l4 + len(seg)
    return Frame(data, spec, l3, l4, l4 + l4_hlen, ip_end, tuple(ext_offsets))


def arp_frame(tpids: tuple[int, ...] = ()) -> bytes:
    eth = MAC_DST + MAC_SRC + b"".join(struct.pack("!HH", t, 7) for t in tpids)
    body = struct.pack("!HHBBH", 1, ETH_P_IPV4, 6, 4, 1) + MAC_SRC + bytes(4) + bytes(6)
    return eth + struct.pack("!H", ETH_P_ARP) + body + bytes([192, 0, 2, 9])
