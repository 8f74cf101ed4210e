"""Raw Ethernet frames with correct IPv4/IPv6 and UDP checksums, for test runs and trafgen."""

from __future__ import annotations

import struct

SRC_MAC = bytes.fromhex("020000000001")
DST_MAC = bytes.fromhex("020000000002")
SRC4, DST4 = bytes([10, 77, 0, 1]), bytes([10, 77, 0, 2])
SRC6 = bytes.fromhex("fd00004d000000000000000000000001")
DST6 = bytes.fromhex("fd00004d000000000000000000000002")
SPORT = 40000
TAG_OFFSET = 20
PAYLOAD_LEN = 292  # inside the benchmark window 290..294
BAD_LEN = 200  # outside every window


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return ~_fold(sum(struct.unpack(f"!{len(data) // 2}H", data))) & 0xFFFF


def payload(tag: bytes, length: int = PAYLOAD_LEN) -> bytes:
    body = bytearray(b"m" * length)
    body[TAG_OFFSET : TAG_OFFSET + len(tag)] = tag
    return bytes(body)


def udp_frame(
    dport: int, data: bytes, ipv6: bool = False, vlan: int | None = None, dst_mac: bytes = DST_MAC
) -> bytes:
    """Ethernet (+ one 802.1Q tag) + IPv4/IPv6 + UDP, checksums computed."""
    ulen = 8 + len(data)
    if ipv6:
        pseudo = SRC6 + DST6 + struct.pack("!I3xB", ulen, 17)
    else:
        pseudo = SRC4 + DST4 + struct.pack("!BBH", 0, 17, ulen)
    udp = struct.pack("!HHHH", SPORT, dport, ulen, 0) + data
    check = csum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", check) + udp[8:]
    if ipv6:
        ip = struct.pack("!IHBB", 6 << 28, ulen, 17, 64) + SRC6 + DST6
        ethertype = 0x86DD
    else:
        head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0) + SRC4 + DST4
        ip = head[:10] + struct.pack("!H", csum(head)) + head[12:]
        ethertype = 0x0800
    eth = dst_mac + SRC_MAC
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + struct.pack("!H", ethertype) + ip + udp


def udp_dport(frame: bytes) -> int:
    """Destination port of a frame built by udp_frame."""
    off = 14 + (4 if frame[12:14] == b"\x81\x00" else 0)
    off += 40 if frame[off] >> 4 == 6 else (frame[off] & 0xF) * 4
    return int(struct.unpack_from("!H", frame, off + 2)[0])


def verify_udp_checksum(frame: bytes) -> bool:
    off = 14 + (4 if frame[12:14] == b"\x81\x00" else 0)
    if frame[off] >> 4 == 6:
        src, dst, l4 = frame[off + 8 : off + 24], frame[off + 24 : off + 40], off + 40
        udp = frame[l4:]
        pseudo = src + dst + struct.pack("!I3xB", len(udp), 17)
    else:
        src, dst, l4 = frame[off + 12 : off + 16], frame[off + 16 : off + 20], off + 20
        udp = frame[l4:]
        pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    return csum(pseudo + udp) == 0
