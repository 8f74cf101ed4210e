"""A pure-Python reference model of the mplex packet contract.

Written from the contract text (README: packet semantics), not from bpf/: the differential
suite (tests/dataplane) compares this model against the real XDP program, so the two must
stay independent. Product code asks it what a packet will do (validate's expectations,
`mplexctl explain`, capture replay). Pure: no I/O, no root, no bcc.

Every step can be written down as it is taken (`steps`, a list the caller passes): that is
`mplexctl explain`, the same code path, so explain and the model cannot disagree.

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
from mplexctl.config.model import Config, Service, tag_text

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


Steps = list[str] | None  # where a traced run writes its steps (None: not traced)
EXT_NAMES = {0: "hop-by-hop", 43: "routing", 60: "destination options", 44: "fragment"}
PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp"}


def _parse_ipv4(frame: bytes, l3: int, steps: Steps) -> Parsed | None:
    if len(frame) < l3 + 20:
        if steps is not None:
            steps.append(f"ipv4: header cut short ({len(frame) - l3} of 20 bytes): pass")
        return None
    if frame[l3] >> 4 != 4:
        if steps is not None:
            steps.append(f"ipv4: version field is {frame[l3] >> 4}, not 4: pass")
        return None
    ihl = frame[l3] & 0x0F
    if ihl < 5 or len(frame) < l3 + ihl * 4:
        if steps is not None:
            steps.append(f"ipv4: header length {ihl * 4} bytes is impossible here: pass")
        return None
    frag = _u16(frame, l3 + 6)
    if frag & 0x1FFF:
        if steps is not None:
            steps.append(
                f"ipv4: a later fragment (offset {(frag & 0x1FFF) * 8}): no L4 header, pass"
            )
        return None  # a non-first fragment: no L4 header here
    first_fragment = bool(frag & 0x2000)
    hdr_len = ihl * 4
    proto = frame[l3 + 9]
    if steps is not None:
        steps.append(
            f"ipv4: header {hdr_len} bytes, total length {_u16(frame, l3 + 2)}, "
            f"protocol {PROTO_NAMES.get(proto, proto)}"
            + (" (first fragment: more fragments follow)" if first_fragment else "")
        )
    return Parsed(l3, 4, proto, l3 + hdr_len, _u16(frame, l3 + 2), hdr_len, first_fragment)


def _parse_ipv6(frame: bytes, l3: int, steps: Steps) -> Parsed | None:
    if len(frame) < l3 + 40:
        if steps is not None:
            steps.append(f"ipv6: header cut short ({len(frame) - l3} of 40 bytes): pass")
        return None
    if frame[l3] >> 4 != 6:
        if steps is not None:
            steps.append(f"ipv6: version field is {frame[l3] >> 4}, not 6: pass")
        return None
    nexthdr = frame[l3 + 6]
    cursor = l3 + 40
    first_fragment = False
    if steps is not None:
        steps.append(f"ipv6: payload length {_u16(frame, l3 + 4)}, next header {nexthdr}")
    for _ in range(C.MAX_IPV6_EXT_HEADERS):
        if nexthdr not in IPV6_EXT_HEADERS:
            break
        if nexthdr == IPV6_FRAGMENT:
            if len(frame) < cursor + 8:
                if steps is not None:
                    steps.append("ipv6: fragment header cut short: pass")
                return None
            if _u16(frame, cursor + 2) & 0xFFF8:
                if steps is not None:
                    steps.append("ipv6: fragment header of a later fragment: no L4 header, pass")
                return None  # non-first fragment
            first_fragment = True
            if steps is not None:
                steps.append("ipv6: extension header fragment, 8 bytes (first fragment)")
            nexthdr = frame[cursor]
            cursor += 8
        else:
            if len(frame) < cursor + 2:
                if steps is not None:
                    steps.append(f"ipv6: extension header {EXT_NAMES[nexthdr]} cut short: pass")
                return None
            kind = nexthdr
            nexthdr, length = frame[cursor], (frame[cursor + 1] + 1) * 8
            cursor += length
            if steps is not None:
                steps.append(f"ipv6: extension header {EXT_NAMES[kind]}, {length} bytes")
    if nexthdr in IPV6_EXT_HEADERS:
        if steps is not None:
            steps.append(
                f"ipv6: more than {C.MAX_IPV6_EXT_HEADERS} extension headers "
                "(the walk stops there): pass"
            )
        return None  # more extension headers than the walk allows
    if steps is not None:
        steps.append(f"ipv6: upper-layer protocol {PROTO_NAMES.get(nexthdr, nexthdr)}")
    return Parsed(l3, 6, nexthdr, cursor, 40 + _u16(frame, l3 + 4), cursor - l3, first_fragment)


def parse(frame: bytes, steps: Steps = None) -> Parsed | None:
    """Parse up to the L4 ports; None when the contract says "pass" before any lookup."""
    if len(frame) < ETH_HLEN:
        if steps is not None:
            steps.append(f"ethernet: frame of {len(frame)} bytes is shorter than 14: pass")
        return None
    ethertype = _u16(frame, 12)
    off = ETH_HLEN
    if steps is not None:
        steps.append(f"ethernet: {len(frame)}-byte frame, ethertype 0x{ethertype:04x}")
    for _ in range(C.MAX_VLAN_TAGS):
        if ethertype not in VLAN_TPIDS:
            break
        if len(frame) < off + VLAN_HLEN:
            if steps is not None:
                steps.append("vlan: tag cut short: pass")
            return None
        if steps is not None:
            steps.append(
                f"vlan: id {_u16(frame, off) & 0x0FFF} (tpid 0x{ethertype:04x}), "
                f"inner ethertype 0x{_u16(frame, off + 2):04x}"
            )
        ethertype = _u16(frame, off + 2)
        off += VLAN_HLEN
    if ethertype == ETH_P_IPV4:
        parsed = _parse_ipv4(frame, off, steps)
    elif ethertype == ETH_P_IPV6:
        parsed = _parse_ipv6(frame, off, steps)
    else:
        if steps is not None:
            why = "a third VLAN tag" if ethertype in VLAN_TPIDS else "neither IPv4 nor IPv6"
            steps.append(f"ethertype 0x{ethertype:04x}: {why}: pass")
        return None  # includes a third VLAN tag
    if parsed is None:
        return None
    if len(frame) < parsed.l4 + 4:
        if steps is not None:
            steps.append("l4: ports cut short: pass")
        return None
    return parsed


def find_service(config: Config, proto: int, dport: int) -> Service | None:
    for svc in config.services:
        if svc.proto_number == proto and svc.port == dport:
            return svc
    return None


def _l4_header_len(frame: bytes, p: Parsed, ip_payload: int, steps: Steps) -> int | None:
    """The L4 header length, or None when the L4 header is malformed."""
    if p.proto == PROTO_UDP:
        if ip_payload < UDP_HLEN or _u16(frame, p.l4 + 4) != ip_payload:
            if steps is not None:
                steps.append(
                    f"udp: length field {_u16(frame, p.l4 + 4)} != {ip_payload} bytes after "
                    "the IP header(s): malformed"
                )
            return None
        return UDP_HLEN
    if ip_payload < TCP_MIN_HLEN:
        if steps is not None:
            steps.append(f"tcp: {ip_payload} bytes after the IP header(s), less than 20: malformed")
        return None
    doff = frame[p.l4 + 12] >> 4
    if doff < 5 or doff * 4 > ip_payload:
        if steps is not None:
            steps.append(f"tcp: data offset {doff * 4} bytes impossible in {ip_payload}: malformed")
        return None
    return doff * 4


def checksum_offset(p: Parsed) -> int:
    return p.l4 + (6 if p.proto == PROTO_UDP else 16)


def rewrite(frame: bytes, p: Parsed, new_port: int) -> bytes:
    """Replace the destination port and patch the L4 checksum incrementally."""
    out = bytearray(frame)
    old_port = _u16(frame, p.l4 + 2)
    out[p.l4 + 2 : p.l4 + 4] = new_port.to_bytes(2, "big")
    csum_off = checksum_offset(p)
    hc = _u16(frame, csum_off)
    if p.proto == PROTO_UDP and p.version == 4 and hc == 0:
        return bytes(out)  # IPv4 UDP without checksum stays without
    new = incremental_checksum(hc, old_port, new_port)
    if p.proto == PROTO_UDP and new == 0:
        new = 0xFFFF
    out[csum_off : csum_off + 2] = new.to_bytes(2, "big")
    return bytes(out)


def _tag_words(tag: bytes) -> str:
    shown = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in tag)
    return f"{tag.hex()} ({shown!r})"


def _service_verdict(frame: bytes, svc: Service, p: Parsed, steps: Steps) -> ModelResult:
    def result(action: str, verdict: str, out: bytes = frame) -> ModelResult:
        if steps is not None:
            steps.append(f"verdict: {verdict} (XDP_{action.upper()})")
        return ModelResult(action, out, svc.name, verdict)

    if p.first_fragment:
        if steps is not None:
            steps.append("fragment: a first fragment: the payload is incomplete")
        return result("drop", "drop_fragment")
    if steps is not None:
        steps.append("fragment: not a fragment")
    if p.ip_len > len(frame) - p.l3 or p.hdr_len > p.ip_len:
        if steps is not None:
            steps.append(
                f"lengths: IP says {p.ip_len} bytes (header {p.hdr_len}), the frame holds "
                f"{len(frame) - p.l3} from the IP header on: malformed"
            )
        return result("drop", "drop_malformed")
    ip_payload = p.ip_len - p.hdr_len
    l4_hlen = _l4_header_len(frame, p, ip_payload, steps)
    if l4_hlen is None:
        return result("drop", "drop_malformed")
    payload_len = ip_payload - l4_hlen
    if steps is not None:
        steps.append(
            f"lengths: consistent (IP {p.ip_len}, IP header(s) {p.hdr_len}, "
            f"{PROTO_NAMES[p.proto]} header {l4_hlen}): payload {payload_len} bytes"
        )
    inside = [w for w in svc.windows if w.min <= payload_len <= w.max]
    if steps is not None:
        windows = ", ".join(str(w) for w in svc.windows)
        where = f"inside window {inside[0]}" if inside else "outside every window"
        steps.append(f"payload length {payload_len}: {where} (windows {windows})")
    if not inside:
        return result("drop", "drop_length")
    start = p.l4 + l4_hlen + svc.tag.offset
    tag = frame[start : start + svc.tag.length]
    port = svc.table.get(tag)
    if steps is not None:
        steps.append(
            f"tag: {svc.tag.length} byte(s) at payload offset {svc.tag.offset}: {_tag_words(tag)}"
        )
    if port is not None:
        out = rewrite(frame, p, port)
        if steps is not None:
            at = checksum_offset(p)
            steps.append(f"route: tag {tag_text(tag)} -> port {port}")
            steps.append(
                f"rewrite: destination port {_u16(frame, p.l4 + 2)} -> {port}; "
                f"{PROTO_NAMES[p.proto]} checksum 0x{_u16(frame, at):04x} -> "
                f"0x{_u16(out, at):04x}"
            )
        return result("pass", "rewrite", out)
    if steps is not None:
        steps.append(f"route: unmatched (no route for this tag; unmatched: {svc.unmatched})")
    if svc.unmatched == "drop":
        return result("drop", "drop_unknown_tag")
    return result("pass", "pass_unmatched")


def run_model(config: Config, frame: bytes, steps: Steps = None) -> ModelResult:
    """What the contract says the program does with `frame` (each step written to `steps`)."""
    frame = bytes(frame)
    p = parse(frame, steps)
    if p is None:
        return ModelResult("pass", frame, None, None)
    if p.proto not in (PROTO_TCP, PROTO_UDP):
        if steps is not None:
            steps.append(f"protocol {p.proto} is neither udp nor tcp: not a service packet, pass")
        return ModelResult("pass", frame, None, None)
    dport = _u16(frame, p.l4 + 2)
    name = PROTO_NAMES[p.proto]
    if steps is not None:
        steps.append(f"{name}: source port {_u16(frame, p.l4)}, destination port {dport}")
    svc = find_service(config, p.proto, dport)
    if svc is None:
        if steps is not None:
            steps.append(f"service: none listens on {name}/{dport}: not a service packet, pass")
        return ModelResult("pass", frame, None, None)
    if steps is not None:
        steps.append(f"service: {svc.name} ({name}/{dport})")
    return _service_verdict(frame, svc, p, steps)


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
