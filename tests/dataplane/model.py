"""A pure-Python reference model of the mplex packet contract.

Written from the contract text (docs / task brief), not from bpf/: the differential test
compares this model against the real XDP program, so the two must stay independent.

Contract summary, in the order the model applies it:
  Ethernet (14 bytes) -> up to two VLAN tags (0x8100 / 0x88a8) -> IPv4 or IPv6 -> L4 ports.
  Anything that cannot be parsed that far, or that is not (protocol, destination port) of a
  service, passes untouched with no verdict.  Service packets then go through:
  fragment -> malformed -> length window -> tag lookup (rewrite | unmatched drop/pass).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from mplexctl import constants as C
from mplexctl.config.model import Config, Service

ETH_HLEN = 14
VLAN_HLEN = 4
VLAN_TPIDS = frozenset({0x8100, 0x88A8})
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
IPV6_EXT_HEADERS = frozenset({0, 43, 60, 44})  # hop-by-hop, routing, dest-opts, fragment
IPV6_FRAGMENT = 44
PROTO_TCP = 6
PROTO_UDP = 17
UDP_HLEN = 8
TCP_MIN_HLEN = 20


@dataclass(frozen=True)
class ModelResult:
    action: str  # "pass" | "drop"
    frame: bytes  # the output frame (the input unchanged unless rewritten)
    service: str | None  # the service the frame belongs to, None for non-service frames
    verdict: str | None  # one of constants.VERDICTS, None for non-service frames


@dataclass(frozen=True)
class Parsed:
    """What the parser learned about a frame whose L4 ports are in the frame."""

    l3: int  # offset of the IP header
    version: int
    proto: int
    l4: int  # offset of the L4 header
    ip_len: int  # IPv4 total length; IPv6 40 + payload length
    hdr_len: int  # IPv4 IHL*4; IPv6 40 + extension headers
    first_fragment: bool


def _u16(frame: bytes, off: int) -> int:
    return (frame[off] << 8) | frame[off + 1]


def fold(s: int) -> int:
    """Fold carries twice, as the contract says (enough for the sum of three 16-bit words)."""
    s = (s & 0xFFFF) + (s >> 16)
    return (s & 0xFFFF) + (s >> 16)


def incremental_checksum(hc: int, old: int, new: int) -> int:
    """RFC 1624 eqn 3: HC' = ~(~HC + ~m + m') in one's complement arithmetic."""
    return ~fold((~hc & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF


def _parse_ipv4(frame: bytes, l3: int) -> Parsed | None:
    if len(frame) < l3 + 20:
        return None
    if frame[l3] >> 4 != 4:
        return None
    ihl = frame[l3] & 0x0F
    if ihl < 5 or len(frame) < l3 + ihl * 4:
        return None
    frag = _u16(frame, l3 + 6)
    if frag & 0x1FFF:
        return None  # a non-first fragment: no L4 header here
    first_fragment = bool(frag & 0x2000)
    hdr_len = ihl * 4
    return Parsed(l3, 4, frame[l3 + 9], l3 + hdr_len, _u16(frame, l3 + 2), hdr_len, first_fragment)


def _parse_ipv6(frame: bytes, l3: int) -> Parsed | None:
    if len(frame) < l3 + 40:
        return None
    if frame[l3] >> 4 != 6:
        return None
    nexthdr = frame[l3 + 6]
    cursor = l3 + 40
    first_fragment = False
    for _ in range(C.MAX_IPV6_EXT_HEADERS):
        if nexthdr not in IPV6_EXT_HEADERS:
            break
        if nexthdr == IPV6_FRAGMENT:
            if len(frame) < cursor + 8:
                return None
            if _u16(frame, cursor + 2) & 0xFFF8:
                return None  # non-first fragment
            first_fragment = True
            nexthdr = frame[cursor]
            cursor += 8
        else:
            if len(frame) < cursor + 2:
                return None
            nexthdr, length = frame[cursor], (frame[cursor + 1] + 1) * 8
            cursor += length
    if nexthdr in IPV6_EXT_HEADERS:
        return None  # more extension headers than the walk allows
    return Parsed(l3, 6, nexthdr, cursor, 40 + _u16(frame, l3 + 4), cursor - l3, first_fragment)


def parse(frame: bytes) -> Parsed | None:
    """Parse up to the L4 ports; None when the contract says "pass" before any lookup."""
    if len(frame) < ETH_HLEN:
        return None
    ethertype = _u16(frame, 12)
    off = ETH_HLEN
    for _ in range(C.MAX_VLAN_TAGS):
        if ethertype not in VLAN_TPIDS:
            break
        if len(frame) < off + VLAN_HLEN:
            return None
        ethertype = _u16(frame, off + 2)
        off += VLAN_HLEN
    if ethertype == ETH_P_IPV4:
        parsed = _parse_ipv4(frame, off)
    elif ethertype == ETH_P_IPV6:
        parsed = _parse_ipv6(frame, off)
    else:
        return None  # includes a third VLAN tag
    if parsed is None or len(frame) < parsed.l4 + 4:
        return None
    return parsed


def find_service(config: Config, proto: int, dport: int) -> Service | None:
    for svc in config.services:
        if svc.proto_number == proto and svc.port == dport:
            return svc
    return None


def _l4_header_len(frame: bytes, p: Parsed, ip_payload: int) -> int | None:
    """The L4 header length, or None when the L4 header is malformed."""
    if p.proto == PROTO_UDP:
        if ip_payload < UDP_HLEN or _u16(frame, p.l4 + 4) != ip_payload:
            return None
        return UDP_HLEN
    if ip_payload < TCP_MIN_HLEN:
        return None
    doff = frame[p.l4 + 12] >> 4
    if doff < 5 or doff * 4 > ip_payload:
        return None
    return doff * 4


def rewrite(frame: bytes, p: Parsed, new_port: int) -> bytes:
    """Replace the destination port and patch the L4 checksum incrementally."""
    out = bytearray(frame)
    old_port = _u16(frame, p.l4 + 2)
    out[p.l4 + 2 : p.l4 + 4] = new_port.to_bytes(2, "big")
    csum_off = p.l4 + (6 if p.proto == PROTO_UDP else 16)
    hc = _u16(frame, csum_off)
    if p.proto == PROTO_UDP and p.version == 4 and hc == 0:
        return bytes(out)  # IPv4 UDP without checksum stays without
    new = incremental_checksum(hc, old_port, new_port)
    if p.proto == PROTO_UDP and new == 0:
        new = 0xFFFF
    out[csum_off : csum_off + 2] = new.to_bytes(2, "big")
    return bytes(out)


def _service_verdict(frame: bytes, svc: Service, p: Parsed) -> ModelResult:
    def result(action: str, verdict: str, out: bytes = frame) -> ModelResult:
        return ModelResult(action, out, svc.name, verdict)

    if p.first_fragment:
        return result("drop", "drop_fragment")
    if p.ip_len > len(frame) - p.l3 or p.hdr_len > p.ip_len:
        return result("drop", "drop_malformed")
    ip_payload = p.ip_len - p.hdr_len
    l4_hlen = _l4_header_len(frame, p, ip_payload)
    if l4_hlen is None:
        return result("drop", "drop_malformed")
    payload_len = ip_payload - l4_hlen
    if not any(w.min <= payload_len <= w.max for w in svc.windows):
        return result("drop", "drop_length")
    start = p.l4 + l4_hlen + svc.tag.offset
    tag = frame[start : start + svc.tag.length]
    for route in svc.routes:
        if route.tag == tag:
            return result("pass", "rewrite", rewrite(frame, p, route.port))
    if svc.unmatched == "drop":
        return result("drop", "drop_unknown_tag")
    return result("pass", "pass_unmatched")


def run_model(config: Config, frame: bytes) -> ModelResult:
    """What the contract says the program does with `frame`."""
    frame = bytes(frame)
    p = parse(frame)
    if p is None or p.proto not in (PROTO_TCP, PROTO_UDP):
        return ModelResult("pass", frame, None, None)
    svc = find_service(config, p.proto, _u16(frame, p.l4 + 2))
    if svc is None:
        return ModelResult("pass", frame, None, None)
    return _service_verdict(frame, svc, p)


@dataclass
class Tally:
    """Per (service name, verdict) packets and bytes, as the program's counters count them."""

    packets: Counter[tuple[str, str]] = field(default_factory=Counter)
    bytes: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, result: ModelResult, frame_len: int) -> None:
        if result.service is None or result.verdict is None:
            return
        key = (result.service, result.verdict)
        self.packets[key] += 1
        self.bytes[key] += frame_len

    def as_dict(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {k: (self.packets[k], self.bytes[k]) for k in self.packets}
