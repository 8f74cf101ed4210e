"""Self-tests of the reference model (and of the generators the differential test relies on)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mplexctl.config.model import Config, Service
from mplexctl.contract.model import ModelResult, Tally, incremental_checksum, run_model

from . import packets as P
from .configs import CONFIGS, load
from .frames import FrameGen, boundary_lengths, seed_for, zero_after_rewrite
from .mutations import MUTATIONS
from .packets import Ext, Frame, Spec

pytestmark = pytest.mark.unit

SAME_PORT = load("same_port")
TELEMETRY = next(s for s in SAME_PORT.services if s.name == "telemetry")  # udp/5000, drop
CONTROL = next(s for s in SAME_PORT.services if s.name == "control")  # tcp/5000, pass


def service_spec(
    svc: Service, version: int, tag: bytes | None = None, plen: int | None = None, **kw: object
) -> Spec:
    """A valid packet for svc: payload of plen (default the first window's min) with the tag."""
    plen = svc.windows[0].min if plen is None else plen
    body = bytearray(b"\x5a" * plen)
    tag = svc.routes[0].tag if tag is None else tag
    body[svc.tag.offset : svc.tag.offset + len(tag)] = tag
    spec = Spec(version=version, proto=svc.proto_number, dport=svc.port, payload=bytes(body))
    return replace(spec, **kw)  # type: ignore[arg-type]


def verdict(frame: bytes | Frame, config: Config = SAME_PORT) -> str | None:
    data = frame.bytes() if isinstance(frame, Frame) else frame
    return run_model(config, data).verdict


def changed(a: bytes, b: bytes) -> set[int]:
    assert len(a) == len(b)
    return {i for i in range(len(a)) if a[i] != b[i]}


# --- checksum arithmetic ----------------------------------------------------------------------
def test_rfc1624_example() -> None:
    # RFC 1624 section 4: m 0x5555 -> 0x3285 with HC 0xDD2F gives 0x0000 (eqn 3), not 0xFFFF.
    assert incremental_checksum(0xDD2F, 0x5555, 0x3285) == 0x0000


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("svc", [TELEMETRY, CONTROL], ids=["udp", "tcp"])
def test_rewrite_equals_full_recomputation(svc: Service, version: int) -> None:
    gen = FrameGen(SAME_PORT, seed=version * 1000 + svc.proto_number)
    for _ in range(400):
        w = gen.rng.choice(svc.windows)
        spec = replace(
            gen.spec(svc, plen=gen.rng.randint(w.min, w.max), tag_kind="route", version=version),
            udp_zero_csum=False,
        )
        f = P.build(spec)
        result = run_model(SAME_PORT, f.bytes())
        assert result.verdict == "rewrite" and result.action == "pass"
        out = result.frame
        route = next(
            r
            for r in svc.routes
            if r.tag == f.bytes()[f.payload + svc.tag.offset :][: svc.tag.length]
        )
        assert int.from_bytes(out[f.l4 + 2 : f.l4 + 4], "big") == route.port
        seg = out[f.l4 : f.ip_end]
        want = P.l4_checksum(spec, seg, f.csum_off - f.l4)
        assert int.from_bytes(out[f.csum_off : f.csum_off + 2], "big") == want, out.hex()
        assert changed(f.bytes(), out) <= {f.l4 + 2, f.l4 + 3, f.csum_off, f.csum_off + 1}


def test_udp_ipv4_checksum_zero_stays_zero() -> None:
    f = P.build(service_spec(TELEMETRY, 4, udp_zero_csum=True, padding=b"\xee" * 9))
    out = run_model(SAME_PORT, f.bytes()).frame
    assert out[f.csum_off : f.csum_off + 2] == b"\0\0"
    assert out[f.l4 + 2 : f.l4 + 4] == TELEMETRY.routes[0].port.to_bytes(2, "big")
    assert changed(f.bytes(), out) <= {f.l4 + 2, f.l4 + 3}
    assert out[-9:] == b"\xee" * 9


def test_udp_ipv6_checksum_zero_is_updated() -> None:
    """IPv6 has no "no checksum": a 0 field goes through eqn 3 like any other value."""
    f = P.build(service_spec(TELEMETRY, 6, udp_zero_csum=True))
    out = run_model(SAME_PORT, f.bytes()).frame
    want = incremental_checksum(0, TELEMETRY.port, TELEMETRY.routes[0].port) or 0xFFFF
    assert int.from_bytes(out[f.csum_off : f.csum_off + 2], "big") == want != 0


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("svc", [TELEMETRY, CONTROL], ids=["udp", "tcp"])
def test_checksum_computing_to_zero(svc: Service, version: int) -> None:
    """UDP writes a computed 0 as 0xFFFF; TCP writes it as computed."""
    rng = random.Random(version)
    for route in svc.routes:
        for _ in range(20):
            body = rng.randbytes(svc.windows[-1].min)
            spec = replace(
                service_spec(svc, version, route.tag),
                payload=body[: svc.tag.offset]
                + route.tag
                + body[svc.tag.offset + svc.tag.length :],
            )
            f = P.build(zero_after_rewrite(spec, route.port))
            out = run_model(SAME_PORT, f.bytes()).frame
            field = int.from_bytes(out[f.csum_off : f.csum_off + 2], "big")
            assert field == (0xFFFF if svc.protocol == "udp" else 0), f.bytes().hex()


# --- verdicts, rule by rule -------------------------------------------------------------------
def test_short_and_non_ip_frames_pass() -> None:
    for n in range(14):
        assert run_model(SAME_PORT, bytes(n)) == ModelResult("pass", bytes(n), None, None)
    assert verdict(P.arp_frame()) is None
    ok = P.build(service_spec(TELEMETRY, 4))
    assert verdict(ok) == "rewrite"
    bent = ok.bytes()[:12] + b"\x88\xcc" + ok.bytes()[14:]
    assert run_model(SAME_PORT, bent) == ModelResult("pass", bent, None, None)


@pytest.mark.parametrize("version", [4, 6])
def test_vlan_tags(version: int) -> None:
    for depth in range(4):
        for tpids in ([P.ETH_P_8021Q] * depth, [P.ETH_P_8021AD] * depth):
            f = P.build(service_spec(TELEMETRY, version, tpids=tuple(tpids)))
            assert verdict(f) == ("rewrite" if depth <= 2 else None)
    f = P.build(service_spec(TELEMETRY, version, tpids=(P.ETH_P_8021AD, P.ETH_P_8021Q)))
    assert verdict(f.bytes()[:16]) is None  # the second tag does not fit


def test_ipv4_header_rules() -> None:
    for words in range(11):
        assert verdict(P.build(service_spec(TELEMETRY, 4, ipv4_opt_words=words))) == "rewrite"
    f = P.build(service_spec(TELEMETRY, 4))
    for ihl in range(5):
        f.data[f.l3] = 0x40 | ihl
        assert verdict(f) is None
    for v in (0, 5, 6, 15):
        f.data[f.l3] = v << 4 | 5
        assert verdict(f) is None
    g = P.build(service_spec(TELEMETRY, 4))
    assert verdict(g.bytes()[: g.l3 + 19]) is None
    assert verdict(g.bytes()[: g.l4 + 3]) is None  # ports not in the frame
    assert verdict(g.bytes()[: g.l4 + 4]) == "drop_malformed"  # total length > frame


def test_ipv4_fragments() -> None:
    for flags in (P.IPV4_DF, P.IPV4_RESERVED, P.IPV4_DF | P.IPV4_RESERVED):
        assert verdict(P.build(service_spec(TELEMETRY, 4, ipv4_frag=flags))) == "rewrite"
    for flags in (P.IPV4_MF, P.IPV4_MF | P.IPV4_DF):
        assert verdict(P.build(service_spec(CONTROL, 4, ipv4_frag=flags))) == "drop_fragment"
    for offset in (1, 8, 0x1FFF):
        for mf in (0, P.IPV4_MF):
            f = P.build(service_spec(TELEMETRY, 4, ipv4_frag=offset | mf))
            assert run_model(SAME_PORT, f.bytes()) == ModelResult("pass", f.bytes(), None, None)
    # A first fragment is dropped as such even when its lengths are also wrong.
    f = P.build(service_spec(TELEMETRY, 4, ipv4_frag=P.IPV4_MF))
    f.set_u16(f.l3 + 2, 9000)
    assert verdict(f) == "drop_fragment"


def test_ipv6_extension_headers() -> None:
    kinds = (P.HOP, P.ROUTING, P.DSTOPTS)
    for count in range(6):
        exts = tuple(Ext(kinds[i % 3], units=i % 2) for i in range(count))
        f = P.build(service_spec(CONTROL, 6, exts=exts))
        assert verdict(f) == ("rewrite" if count <= 4 else None)
    for frag, want in (
        (0, "drop_fragment"),
        (1, "drop_fragment"),
        (6, "drop_fragment"),
        (8, None),
        (0xFFF9, None),
    ):
        exts = (Ext(P.HOP), Ext(P.FRAGMENT, frag=frag), Ext(P.DSTOPTS))
        assert verdict(P.build(service_spec(TELEMETRY, 6, exts=exts))) == want
    f = P.build(service_spec(TELEMETRY, 6, exts=(Ext(P.ROUTING), Ext(P.FRAGMENT))))
    assert verdict(f.bytes()[: f.ext_offsets[1] + 7]) is None  # fragment header cut short
    assert verdict(f.bytes()[: f.ext_offsets[0] + 1]) is None  # 2 bytes of routing cut short
    # A body longer than the payload: L4 lands inside the payload, hdr_len > ip_len or a
    # different "port"; past the frame it passes.
    g = P.build(service_spec(TELEMETRY, 6, exts=(Ext(P.DSTOPTS),)))
    g.data[g.ext_offsets[0] + 1] = 255
    assert verdict(g) is None
    h = P.build(service_spec(TELEMETRY, 6, exts=(Ext(P.DSTOPTS),), padding=bytes(400)))
    units = 1 + (h.ip_end - h.l4) // 8
    h.data[h.ext_offsets[0] + 1] = units
    l4 = h.ext_offsets[0] + (units + 1) * 8  # inside the padding, after the IP packet
    h.set_u16(l4 + 2, TELEMETRY.port)
    assert verdict(h) == "drop_malformed"  # hdr_len > ip_len
    h.set_u16(l4 + 2, TELEMETRY.port + 1)
    assert verdict(h) is None


def test_length_consistency() -> None:
    f = P.build(service_spec(TELEMETRY, 4, padding=bytes(4)))
    f.set_u16(f.l3 + 2, f.ip_end - f.l3 + 1)  # into the padding: UDP length != ip payload
    assert verdict(f) == "drop_malformed"
    f.set_u16(f.l3 + 2, f.ip_end - f.l3 + 5)  # past the frame
    assert verdict(f) == "drop_malformed"
    f.set_u16(f.l3 + 2, 19)  # total length < IHL*4
    assert verdict(f) == "drop_malformed"
    g = P.build(service_spec(TELEMETRY, 6))
    g.set_u16(g.l4 + 4, g.u16(g.l4 + 4) + 1)
    assert verdict(g) == "drop_malformed"
    for doff in (0, 4):
        t = P.build(service_spec(CONTROL, 4))
        t.data[t.l4 + 12] = doff << 4
        assert verdict(t) == "drop_malformed"
    t = P.build(service_spec(CONTROL, 6, plen=1, tag=b"a", tcp_doff=6))
    t.data[t.l4 + 12] = 7 << 4  # 28 > 25 bytes of IP payload
    assert verdict(t) == "drop_malformed"
    # Malformed is decided before the payload length: a wrong UDP length never gives drop_length.
    u = P.build(service_spec(TELEMETRY, 4, plen=5, tag=b""))
    assert verdict(u) == "drop_length"
    u.set_u16(u.l4 + 4, 7)
    assert verdict(u) == "drop_malformed"


def test_windows_and_tags() -> None:
    for svc in (TELEMETRY, CONTROL):
        for plen in boundary_lengths(svc):
            inside = any(w.min <= plen <= w.max for w in svc.windows)
            f = P.build(service_spec(svc, 4, plen=plen, tag=svc.routes[0].tag[: max(0, plen)]))
            assert verdict(f) == ("rewrite" if inside else "drop_length"), plen
    unknown = P.build(service_spec(TELEMETRY, 6, tag=b"zzz"))
    assert run_model(SAME_PORT, unknown.bytes()) == ModelResult(
        "drop", unknown.bytes(), "telemetry", "drop_unknown_tag"
    )
    unmatched = P.build(service_spec(CONTROL, 6, tag=b"z", padding=b"pad"))
    assert run_model(SAME_PORT, unmatched.bytes()) == ModelResult(
        "pass", unmatched.bytes(), "control", "pass_unmatched"
    )


def test_protocol_and_port_select_the_service() -> None:
    wide = load("wide_tags")  # tcp/443 and udp/7000 only
    udp443 = P.build(Spec(proto=P.UDP, dport=443, payload=bytes(20)))
    assert verdict(udp443, wide) is None
    tcp443 = P.build(Spec(proto=P.TCP, dport=443, payload=bytes(20)))
    assert run_model(wide, tcp443.bytes()).service == "secure"
    assert run_model(SAME_PORT, P.build(service_spec(CONTROL, 4)).bytes()).service == "control"
    assert run_model(SAME_PORT, P.build(service_spec(TELEMETRY, 4)).bytes()).service == "telemetry"
    icmp = P.build(Spec(proto=P.ICMP, dport=5000, payload=bytes(300)))
    assert verdict(icmp) is None


def test_tally_counts_whole_frames() -> None:
    tally = Tally()
    f = P.build(service_spec(TELEMETRY, 4, padding=bytes(17)))
    for _ in range(3):
        tally.add(run_model(SAME_PORT, f.bytes()), len(f.data))
    tally.add(run_model(SAME_PORT, P.arp_frame()), 42)
    assert tally.as_dict() == {("telemetry", "rewrite"): (3, 3 * len(f.data))}


# --- the generators ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_valid_frames_are_valid(name: str) -> None:
    """Built frames carry correct checksums, and the model agrees with what was built."""
    config = load(name)
    gen = FrameGen(config, seed=7)
    for _ in range(500):
        svc = gen.rng.choice(config.services)
        spec = replace(gen.spec(svc), udp_zero_csum=False, ipv4_frag=0)
        f = P.build(spec)
        seg = f.bytes()[f.l4 : f.ip_end]
        assert f.u16(f.csum_off) == P.l4_checksum(spec, seg, f.csum_off - f.l4)
        if spec.version == 4:
            assert P.ones_sum(f.bytes()[f.l3 : f.l4]) == 0xFFFF  # IPv4 header checksum
        plen = len(spec.payload)
        tag = spec.payload[svc.tag.offset : svc.tag.offset + svc.tag.length]
        if not any(w.min <= plen <= w.max for w in svc.windows):
            want = "drop_length"
        elif tag in {r.tag for r in svc.routes}:
            want = "rewrite"
        else:
            want = "pass_unmatched" if svc.unmatched == "pass" else "drop_unknown_tag"
        assert run_model(config, f.bytes()).verdict == want


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_generated_frames_reach_every_verdict(name: str) -> None:
    """The frames of the differential test reach every verdict each service can give."""
    config = load(name)
    cases = list(FrameGen(config, seed_for(name)).cases(12_000))
    assert len(cases) >= 10_000
    seen = {(r.service, r.verdict) for r in (run_model(config, c.frame) for c in cases)}
    assert (None, None) in seen
    for svc in config.services:
        wanted = {
            "drop_fragment",
            "drop_malformed",
            "drop_length",
            "rewrite",
            "drop_unknown_tag" if svc.unmatched == "drop" else "pass_unmatched",
        }
        missing = {v for v in wanted if (svc.name, v) not in seen}
        assert not missing, f"service {svc.name}: no generated frame reaches {sorted(missing)}"
    labels = {c.label for c in cases}
    for mutation, _ in MUTATIONS:
        assert f"mut-{mutation}" in labels
    assert [c.frame for c in FrameGen(config, 5).cases(300)] == [
        c.frame for c in FrameGen(config, 5).cases(300)
    ], "generation must be deterministic"
