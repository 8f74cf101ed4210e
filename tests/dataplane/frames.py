"""Seeded frame generators for the data-plane tests.

Most frames are "near-valid" service packets: built correct (lengths, checksums with the
pseudo-header), then often bent by one mutation, so every rule of the contract is exercised.
`FrameGen(config, seed).cases(n)` yields deterministic sweeps first, then n random cases.
"""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from mplexctl.config.model import Config, Service

from . import packets as P
from .mutations import MUTATIONS
from .packets import Ext, Spec
from .sweeps import sweep_cases

MAX_PAYLOAD = 2900  # keeps every frame well inside one page for BPF_PROG_TEST_RUN
DEFAULT_SEED = 0x6D706C78  # "mplx"
EXT_KINDS = (P.HOP, P.ROUTING, P.DSTOPTS)


@dataclass(frozen=True)
class Case:
    label: str
    frame: bytes


def seed_for(config_name: str) -> int:
    """The seed of a config's frames; MPLEX_DIFF_SEED=N explores another set of frames."""
    extra = int(os.environ.get("MPLEX_DIFF_SEED", "0"), 0)
    return DEFAULT_SEED ^ zlib.crc32(config_name.encode()) ^ extra


def boundary_lengths(svc: Service) -> list[int]:
    """min-1, min, max, max+1 of every window, within 0..MAX_PAYLOAD."""
    out = {n for w in svc.windows for n in (w.min - 1, w.min, w.max, w.max + 1)}
    return sorted(n for n in out if 0 <= n <= MAX_PAYLOAD)


def zero_after_rewrite(spec: Spec, new_port: int) -> Spec:
    """Choose the source port so that rewriting dport to new_port gives a checksum of 0."""
    probe = P.build(replace(spec, sport=0, dport=new_port, udp_zero_csum=spec.proto == P.UDP))
    seg = bytearray(probe.data[probe.l4 : probe.ip_end])
    at = probe.csum_off - probe.l4
    seg[at : at + 2] = b"\0\0"
    rest = P.ones_sum(P.pseudo_header(spec, len(seg)) + bytes(seg))
    return replace(spec, sport=0xFFFF - rest, udp_zero_csum=False)


class FrameGen:
    """Frames for one config, from one seeded random.Random."""

    def __init__(self, config: Config, seed: int) -> None:
        self.rng = random.Random(seed)
        self.config = config
        self.services = config.services
        self.endpoints = {(s.proto_number, s.port) for s in config.services}

    # --- building blocks --------------------------------------------------------------------
    def tag_bytes(self, svc: Service, kind: str) -> bytes:
        rng, routed = self.rng, {r.tag for r in svc.routes}
        if kind == "route" and svc.routes:
            return rng.choice(svc.routes).tag
        if kind == "near" and svc.routes:
            near = bytearray(rng.choice(svc.routes).tag)
            near[rng.randrange(len(near))] ^= 1 << rng.randrange(8)
            return bytes(near)
        tag = rng.randbytes(svc.tag.length)
        for _ in range(100):  # an unknown tag (a routed one may slip through: still valid)
            if tag not in routed:
                break
            tag = rng.randbytes(svc.tag.length)
        return tag

    def payload(self, svc: Service, plen: int, tag_kind: str | None = None) -> bytes:
        rng = self.rng
        kind = tag_kind or rng.choices(["route", "unknown", "near"], [55, 30, 15])[0]
        body = bytearray(rng.randbytes(plen))
        tag, off = self.tag_bytes(svc, kind), svc.tag.offset
        if plen > off:
            end = min(plen, off + len(tag))
            body[off:end] = tag[: end - off]
        return bytes(body)

    def payload_len(self, svc: Service) -> int:
        rng, r = self.rng, self.rng.random()
        usable = [w for w in svc.windows if w.min <= MAX_PAYLOAD]
        if r < 0.4 or not usable:
            return rng.choice(boundary_lengths(svc))
        if r < 0.85:
            w = rng.choice(usable)
            return rng.randint(w.min, min(w.max, MAX_PAYLOAD))
        top = min(MAX_PAYLOAD, max(w.max for w in svc.windows) + 16)
        return rng.randint(0, top)

    def exts(self, count: int) -> tuple[Ext, ...]:
        rng = self.rng
        return tuple(
            Ext(rng.choice(EXT_KINDS), rng.choice([0, 0, 0, 1, 2, 3])) for _ in range(count)
        )

    def spec(
        self,
        svc: Service,
        plen: int | None = None,
        tag_kind: str | None = None,
        version: int | None = None,
    ) -> Spec:
        """A valid service packet with random encapsulation."""
        rng = self.rng
        version = version or rng.choice([4, 6])
        n_tags = rng.choices([0, 1, 2], [50, 25, 25])[0]
        padding = b""
        if rng.random() < 0.25:
            padding = rng.randbytes(rng.randint(1, 40))
        return Spec(
            version=version,
            proto=svc.proto_number,
            sport=rng.randint(1, 0xFFFF),
            dport=svc.port,
            payload=self.payload(svc, self.payload_len(svc) if plen is None else plen, tag_kind),
            tpids=tuple(rng.choice(P.TPIDS) for _ in range(n_tags)),
            ipv4_opt_words=0 if rng.random() < 0.7 else rng.randint(1, 10),
            ipv4_frag=rng.choices(
                [0, P.IPV4_DF, P.IPV4_RESERVED, P.IPV4_DF | P.IPV4_RESERVED], [70, 15, 10, 5]
            )[0],
            exts=self.exts(rng.choices([0, 1, 2, 3, 4], [40, 20, 15, 10, 15])[0])
            if version == 6
            else (),
            tcp_doff=5 if rng.random() < 0.6 else rng.randint(6, 15),
            udp_zero_csum=rng.random() < (0.1 if version == 4 else 0.03),
            padding=padding,
        )

    def other_port(self, proto: int) -> int:
        while True:
            port = self.rng.choice([self.rng.randint(1, 0xFFFF), *(s.port for s in self.services)])
            if (proto, port) not in self.endpoints:
                return port

    # --- random cases -----------------------------------------------------------------------
    def valid(self, svc: Service) -> Case:
        return Case("valid", P.build(self.spec(svc)).bytes())

    def mutated(self, svc: Service) -> Case:
        f = P.build(self.spec(svc))
        for _ in range(20):
            name, fn = self.rng.choice(MUTATIONS)
            out = fn(self.rng, f)
            if out is not None:
                return Case(f"mut-{name}", out)
        return Case("valid", f.bytes())

    def variant(self, svc: Service) -> Case:
        name, fn = self.rng.choice(VARIANTS)
        return Case(f"var-{name}", P.build(fn(self, svc)).bytes())

    def non_service(self) -> Case:
        rng = self.rng
        kind = rng.choice(
            ["other-port", "other-proto", "arp", "ethertype", "random", "random-ip", "wrong-l4"]
        )
        svc = rng.choice(self.services)
        if kind == "other-port":
            spec = self.spec(svc)
            return Case(kind, P.build(replace(spec, dport=self.other_port(spec.proto))).bytes())
        if kind in ("other-proto", "wrong-l4"):
            spec = self.spec(svc)
            if kind == "other-proto":
                proto = rng.choice(
                    [P.ICMP if spec.version == 4 else P.ICMPV6, P.NO_NEXT, rng.randrange(256)]
                )
            else:  # the other of UDP/TCP on this port: a service only if configured
                proto = P.TCP if spec.proto == P.UDP else P.UDP
            return Case(kind, P.build(replace(spec, proto=proto)).bytes())
        if kind == "arp":
            return Case(
                kind, P.arp_frame(tuple(rng.choice(P.TPIDS) for _ in range(rng.randint(0, 2))))
            )
        if kind == "ethertype":
            et = rng.choice([0x0806, 0x88CC, 0x8847, 0x86DE, 0x0801, 0x9100, rng.randrange(65536)])
            body = rng.randbytes(rng.randint(0, 120))
            return Case(kind, P.MAC_DST + P.MAC_SRC + et.to_bytes(2, "big") + body)
        if kind == "random":
            return Case(kind, rng.randbytes(rng.randint(14, 200)))
        et = rng.choice([P.ETH_P_IPV4, P.ETH_P_IPV6])
        ip = bytearray(rng.randbytes(rng.randint(0, 120)))
        if ip:
            ip[0] = (0x40 if et == P.ETH_P_IPV4 else 0x60) | (ip[0] & 0x0F)
        return Case(kind, P.MAC_DST + P.MAC_SRC + et.to_bytes(2, "big") + bytes(ip))

    def random_case(self) -> Case:
        rng = self.rng
        svc = rng.choice(self.services)
        r = rng.random()
        if r < 0.30:
            return self.valid(svc)
        if r < 0.65:
            return self.mutated(svc)
        if r < 0.85:
            return self.variant(svc)
        if r < 0.995:
            return self.non_service()
        return Case("short", rng.randbytes(rng.randint(0, 13)))

    def cases(self, n_random: int) -> Iterator[Case]:
        yield from sweep_cases(self)
        for _ in range(n_random):
            yield self.random_case()


# --- variants: specs that differ from a valid one in one rule -----------------------------
Variant = Callable[[FrameGen, Service], Spec]


def _v4(g: FrameGen, svc: Service) -> Spec:
    return g.spec(svc, version=4)


def _v6(g: FrameGen, svc: Service) -> Spec:
    return g.spec(svc, version=6)


def _insert_frag(g: FrameGen, svc: Service, frag: int) -> Spec:
    spec = _v6(g, svc)
    exts = list(spec.exts[: g.rng.randint(0, 3)])
    exts.insert(g.rng.randint(0, len(exts)), Ext(P.FRAGMENT, frag=frag))
    return replace(spec, exts=tuple(exts))


def v4_first_fragment(g: FrameGen, svc: Service) -> Spec:
    extra = g.rng.choice([0, P.IPV4_DF, P.IPV4_RESERVED])
    return replace(_v4(g, svc), ipv4_frag=P.IPV4_MF | extra)


def v4_later_fragment(g: FrameGen, svc: Service) -> Spec:
    offset = g.rng.choice([1, 0x1FFF, g.rng.randint(1, 0x1FFF)])
    return replace(_v4(g, svc), ipv4_frag=offset | g.rng.choice([0, P.IPV4_MF, P.IPV4_DF]))


def v6_first_fragment(g: FrameGen, svc: Service) -> Spec:
    return _insert_frag(g, svc, g.rng.choice([0, 1, 6, 7]))  # M flag and reserved bits


def v6_later_fragment(g: FrameGen, svc: Service) -> Spec:
    offset = g.rng.choice([1, 0x1FFF, g.rng.randint(1, 0x1FFF)])
    return _insert_frag(g, svc, offset << 3 | g.rng.randint(0, 1))


def three_vlans(g: FrameGen, svc: Service) -> Spec:
    return replace(g.spec(svc), tpids=tuple(g.rng.choice(P.TPIDS) for _ in range(3)))


def two_vlans(g: FrameGen, svc: Service) -> Spec:
    return replace(g.spec(svc), tpids=tuple(g.rng.choice(P.TPIDS) for _ in range(2)))


def ext_chain(g: FrameGen, svc: Service) -> Spec:
    """0..5 extension headers of every kind, a first-fragment header among them sometimes."""
    spec = _v6(g, svc)
    exts = list(g.exts(g.rng.randint(0, 5)))
    if exts and g.rng.random() < 0.3:
        exts[g.rng.randrange(len(exts))] = Ext(P.FRAGMENT, frag=g.rng.randint(0, 1))
    return replace(spec, exts=tuple(exts))


def zero_udp_checksum(g: FrameGen, svc: Service) -> Spec:
    return replace(g.spec(svc), udp_zero_csum=svc.protocol == "udp")


def rewrite_to_zero(g: FrameGen, svc: Service) -> Spec:
    """A routed packet whose rewritten checksum computes to 0 (UDP writes 0xffff)."""
    if not svc.routes:
        return g.spec(svc)
    usable = [w for w in svc.windows if w.min <= MAX_PAYLOAD]
    w = g.rng.choice(usable)
    spec = g.spec(svc, plen=g.rng.randint(w.min, min(w.max, MAX_PAYLOAD)), tag_kind="route")
    start = svc.tag.offset
    tag = spec.payload[start : start + svc.tag.length]
    port = next(r.port for r in svc.routes if r.tag == tag)
    return zero_after_rewrite(replace(spec, udp_zero_csum=False), port)


def big_padding(g: FrameGen, svc: Service) -> Spec:
    return replace(g.spec(svc), padding=g.rng.randbytes(g.rng.randint(1, 200)))


def ip_options(g: FrameGen, svc: Service) -> Spec:
    return replace(_v4(g, svc), ipv4_opt_words=g.rng.randint(0, 10))


def tcp_options(g: FrameGen, svc: Service) -> Spec:
    return replace(g.spec(svc), tcp_doff=g.rng.randint(5, 15))


VARIANTS: list[tuple[str, Variant]] = [
    ("v4-first-frag", v4_first_fragment),
    ("v4-later-frag", v4_later_fragment),
    ("v6-first-frag", v6_first_fragment),
    ("v6-later-frag", v6_later_fragment),
    ("vlan3", three_vlans),
    ("vlan2", two_vlans),
    ("ext-chain", ext_chain),
    ("udp-csum0", zero_udp_checksum),
    ("csum-to-zero", rewrite_to_zero),
    ("csum-to-zero", rewrite_to_zero),
    ("padding", big_padding),
    ("ip-options", ip_options),
    ("tcp-options", tcp_options),
]
