"""Build the frame of a test packet (an expectation's `packet`, `explain --packet`).

Well-formed: correct lengths, IPv4 header checksum and L4 checksum over the pseudo-header,
so a packet's verdict is the one its keys ask for. Fixed values (README: Proving a change):
MAC 02:00:00:00:00:02 -> 02:00:00:00:00:01, 192.0.2.1 -> 198.51.100.7 or
2001:db8::1 -> 2001:db8::fe, source port 40000, TTL / hop limit 64.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mplexctl import constants as C
from mplexctl.config.model import Config, Packet, Service

MAC_DST = bytes.fromhex("020000000001")
MAC_SRC = bytes.fromhex("020000000002")
SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db80000000000000000000000fe")
SPORT = 40000
TTL = 64
TPID_OUTER, TPID_INNER = 0x88A8, 0x8100  # two tags: 802.1ad outside 802.1Q; one: 802.1Q
ETH_P_IPV4, ETH_P_IPV6 = 0x0800, 0x86DD
IPV4_MF = 0x2000
IPV6_FRAGMENT = 44
LATER_FRAGMENT_OFFSET = 185  # in 8-byte units: where a 1500-byte MTU's second fragment starts
TCP_PSH_ACK = 0x18
TCP_SEQ = 0x01020304
ETH_HLEN = 14  # BPF_PROG_TEST_RUN refuses a shorter frame (EINVAL)
# BPF_PROG_TEST_RUN takes an XDP frame of at most a page less the headroom (256) and the
# skb_shared_info tail (320 on x86-64): 3,520 bytes. Kept a little below.
TEST_RUN_MAX_FRAME = 3500
L4_HLEN = {"udp": 8, "tcp": 20}


@dataclass(frozen=True)
class Built:
    frame: bytes
    l4: int  # offset of the L4 header (where the destination port is, + 2)


def service_for(config: Config, protocol: str, port: int) -> Service | None:
    for svc in config.services:
        if svc.protocol == protocol and svc.port == port:
            return svc
    return None


def payload_of(config: Config, packet: Packet) -> bytes:
    if packet.payload is not None:
        return packet.payload
    body = bytearray(packet.length or 0)
    if packet.tag is not None:
        svc = service_for(config, packet.protocol, packet.port)
        off = svc.tag.offset if svc is not None else 0
        body[off : off + len(packet.tag)] = packet.tag
    return bytes(body)


def frame_size(packet: Packet, payload_len: int) -> int:
    ip = 20 if packet.ip == 4 else 40 + (8 if packet.fragment else 0)
    return 14 + 4 * len(packet.vlan) + ip + L4_HLEN[packet.protocol] + payload_len - packet.truncate


def _ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _l4(packet: Packet, payload: bytes, pseudo: bytes) -> bytes:
    if packet.protocol == "udp":
        seg = struct.pack("!HHHH", SPORT, packet.port, 8 + len(payload), 0) + payload
        at = 6
    else:
        seg = struct.pack(
            "!HHIIBBHHH", SPORT, packet.port, TCP_SEQ, 0, 5 << 4, TCP_PSH_ACK, 0xFFFF, 0, 0
        )
        seg += payload
        at = 16
    csum = ~_ones_sum(pseudo + seg) & 0xFFFF
    if packet.protocol == "udp" and csum == 0:
        csum = 0xFFFF
    return seg[:at] + csum.to_bytes(2, "big") + seg[at + 2 :]


def build_frame(config: Config, packet: Packet) -> Built:
    """The frame of `packet` (the tag is placed by the service its port selects in config)."""
    payload = payload_of(config, packet)
    proto = C.PROTO_NUMBERS[packet.protocol]
    l4_len = L4_HLEN[packet.protocol] + len(payload)
    eth = MAC_DST + MAC_SRC
    tpids = (TPID_OUTER, TPID_INNER)[-len(packet.vlan) :] if packet.vlan else ()
    for tpid, vid in zip(tpids, packet.vlan, strict=True):
        eth += struct.pack("!HH", tpid, vid)
    if packet.ip == 4:
        frag = {"first": IPV4_MF, "later": LATER_FRAGMENT_OFFSET}.get(packet.fragment or "", 0)
        hdr = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + l4_len, 0x4242, frag, TTL, proto, 0, SRC4, DST4
        )
        hdr = hdr[:10] + (~_ones_sum(hdr) & 0xFFFF).to_bytes(2, "big") + hdr[12:]
        pseudo = SRC4 + DST4 + struct.pack("!BBH", 0, proto, l4_len)
        l3 = eth + struct.pack("!H", ETH_P_IPV4) + hdr
    else:
        ext = b""
        nexthdr = proto
        if packet.fragment:
            word = 1 if packet.fragment == "first" else LATER_FRAGMENT_OFFSET << 3
            ext = struct.pack("!BBHI", proto, 0, word, 0x4D504C58)
            nexthdr = IPV6_FRAGMENT
        hdr = struct.pack("!IHBB16s16s", 0x60000000, len(ext) + l4_len, nexthdr, TTL, SRC6, DST6)
        pseudo = SRC6 + DST6 + struct.pack("!I3xB", l4_len, proto)
        l3 = eth + struct.pack("!H", ETH_P_IPV6) + hdr + ext
    frame = l3 + _l4(packet, payload, pseudo)
    return Built(frame[: len(frame) - packet.truncate], len(l3))
