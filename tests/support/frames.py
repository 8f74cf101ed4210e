"""Ethernet frames for tests and benchmarks: checksums, one IPv4/IPv6 UDP/TCP builder, and
reading the L4 header back. The data-plane generator (tests/dataplane/packets.py) builds the
odd frames (VLAN stacks, extension headers, options) with the same checksum helper."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ETH_P_ALL = 0x0003
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
TCP, UDP = 6, 17
TCP_SYN = 0x02

SRC_MAC = bytes.fromhex("020000000002")
DST_MAC = bytes.fromhex("020000000001")
SRC4, DST4 = "192.0.2.1", "192.0.2.2"  # TEST-NET-1: only ever inside test namespaces
SRC6, DST6 = "2001:db8::1", "2001:db8::2"
SPORT = 40000
TAG_OFFSET = 20  # where the sample configs read the tag
PAYLOAD_LEN = 292  # inside the sample configs' window 290..294


def ones_sum(data: bytes) -> int:
    """The 16-bit ones' complement sum of data (RFC 1071), folded."""
    if len(data) % 2:
        data += b"\0"
    s = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def checksum(data: bytes) -> int:
    """The Internet checksum of data: the complement of its ones' complement sum."""
    return ~ones_sum(data) & 0xFFFF


def payload(tag: bytes, length: int = PAYLOAD_LEN, fill: bytes = b"x") -> bytes:
    """`length` bytes of `fill` with `tag` at TAG_OFFSET."""
    body = bytearray(fill * length)
    body[TAG_OFFSET : TAG_OFFSET + len(tag)] = tag
    return bytes(body)


@dataclass(frozen=True)
class L4View:
    """Where the parts of an IPv4/IPv6 UDP/TCP frame are (at most one 802.1Q tag; IPv4
    options allowed, IPv6 extension headers not)."""

    version: int
    proto: int
    l3: int
    l4: int
    end: int  # end of the IP packet
    src_ip: bytes
    dst_ip: bytes

    @property
    def csum_off(self) -> int:
        return self.l4 + (6 if self.proto == UDP else 16)


def parse_l4(frame: bytes) -> L4View | None:
    """The L4 layout of an IPv4/IPv6 UDP/TCP frame, or None for anything else."""
    if len(frame) < 14:
        return None
    l3 = 14
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETH_P_8021Q and len(frame) >= 18:
        l3, ethertype = 18, int.from_bytes(frame[16:18], "big")
    if ethertype == ETH_P_IPV4 and len(frame) >= l3 + 20:
        ihl = (frame[l3] & 0x0F) * 4
        total = int.from_bytes(frame[l3 + 2 : l3 + 4], "big")
        src, dst = frame[l3 + 12 : l3 + 16], frame[l3 + 16 : l3 + 20]
        view = L4View(4, frame[l3 + 9], l3, l3 + ihl, l3 + total, src, dst)
    elif ethertype == ETH_P_IPV6 and len(frame) >= l3 + 40:
        plen = int.from_bytes(frame[l3 + 4 : l3 + 6], "big")
        src, dst = frame[l3 + 8 : l3 + 24], frame[l3 + 24 : l3 + 40]
        view = L4View(6, frame[l3 + 6], l3, l3 + 40, l3 + 40 + plen, src, dst)
    else:
        return None
    if view.proto not in (TCP, UDP) or view.end > len(frame):
        return None
    return view


def _pseudo(view: L4View, l4_len: int) -> bytes:
    if view.version == 4:
        return view.src_ip + view.dst_ip + struct.pack("!BBH", 0, view.proto, l4_len)
    return view.src_ip + view.dst_ip + struct.pack("!I3xB", l4_len, view.proto)


def compute_l4_checksum(frame: bytes) -> int:
    """Full recomputation of the UDP/TCP checksum of frame (the field itself taken as 0)."""
    view = parse_l4(frame)
    assert view is not None, "not an IPv4/IPv6 UDP/TCP frame"
    at = view.csum_off
    seg = frame[view.l4 : at] + b"\0\0" + frame[at + 2 : view.end]
    csum = checksum(_pseudo(view, view.end - view.l4) + seg)
    return 0xFFFF if view.proto == UDP and csum == 0 else csum


def l4_checksum_ok(frame: bytes) -> bool:
    """True when the L4 checksum is right (an IPv4 UDP checksum of 0 means "none")."""
    view = parse_l4(frame)
    if view is None:
        return False
    field = int.from_bytes(frame[view.csum_off : view.csum_off + 2], "big")
    if view.version == 4 and view.proto == UDP and field == 0:
        return True
    return field == compute_l4_checksum(frame)


def ports(frame: bytes) -> tuple[int, int]:
    """(source port, destination port) of a UDP/TCP frame."""
    view = parse_l4(frame)
    assert view is not None
    sport, dport = struct.unpack_from("!HH", frame, view.l4)
    return sport, dport


def with_dport(frame: bytes, port: int) -> bytes:
    """frame with its destination port replaced and its L4 checksum fully recomputed (an
    IPv4 UDP checksum of 0 stays 0)."""
    view = parse_l4(frame)
    assert view is not None
    out = bytearray(frame)
    out[view.l4 + 2 : view.l4 + 4] = port.to_bytes(2, "big")
    at = view.csum_off
    if not (view.version == 4 and view.proto == UDP and frame[at : at + 2] == b"\0\0"):
        out[at : at + 2] = compute_l4_checksum(bytes(out)).to_bytes(2, "big")
    return bytes(out)


def build_frame(
    version: int,
    proto: int,
    data: bytes,
    dport: int,
    *,
    sport: int = SPORT,
    zero_csum: bool = False,
    tcp_flags: int = TCP_SYN,
    src_mac: bytes = SRC_MAC,
    dst_mac: bytes = DST_MAC,
    src: str | None = None,
    dst: str | None = None,
    vlan: int | None = None,
) -> bytes:
    """An Ethernet frame (+ one 802.1Q tag) carrying IPv4/IPv6 and UDP/TCP with correct
    lengths and checksums (addresses default to SRC4/DST4, SRC6/DST6)."""
    if proto == UDP:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 65535, 0, 0)
        l4 += data
    if version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
            socket.inet_pton(socket.AF_INET, src or SRC4),
            socket.inet_pton(socket.AF_INET, dst or DST4),
        )  # fmt: skip
        ip = ip[:10] + checksum(ip).to_bytes(2, "big") + ip[12:]
        ethertype = ETH_P_IPV4
    else:
        ip = struct.pack(
            "!IHBB16s16s", 0x60000000, len(l4), proto, 64,
            socket.inet_pton(socket.AF_INET6, src or SRC6),
            socket.inet_pton(socket.AF_INET6, dst or DST6),
        )  # fmt: skip
        ethertype = ETH_P_IPV6
    eth = dst_mac + src_mac
    if vlan is not None:
        eth += struct.pack("!HH", ETH_P_8021Q, vlan)
    frame = eth + ethertype.to_bytes(2, "big") + ip + l4
    if proto == UDP and zero_csum:
        return frame
    view = parse_l4(frame)
    assert view is not None
    csum = compute_l4_checksum(frame).to_bytes(2, "big")
    return frame[: view.csum_off] + csum + frame[view.csum_off + 2 :]


def tagged_udp(tag: bytes, dport: int = 5000, length: int = PAYLOAD_LEN, **kw: object) -> bytes:
    """A UDP/IPv4 frame to dport whose payload carries tag (see payload)."""
    return udp_frame(payload(tag, length), dport, **kw)


def udp_frame(data: bytes, dport: int, version: int = 4, **kw: object) -> bytes:
    """build_frame for UDP (the keywords as build_frame's)."""
    return build_frame(version, UDP, data, dport, **kw)  # type: ignore[arg-type]


def tcp_frame(data: bytes, dport: int, version: int = 4, **kw: object) -> bytes:
    """build_frame for TCP (the keywords as build_frame's)."""
    return build_frame(version, TCP, data, dport, **kw)  # type: ignore[arg-type]
