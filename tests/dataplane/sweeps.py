"""Deterministic sweeps: every window boundary, every truncation point, every header size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from mplexctl.config.model import Service

from . import packets as P
from .packets import Ext

if TYPE_CHECKING:
    from .frames import Case, FrameGen


def window_sweep(g: FrameGen, svc: Service) -> Iterator[Case]:
    """min-1, min, max, max+1 of every window, IPv4 and IPv6, with a routed and an unknown tag."""
    from .frames import Case, boundary_lengths

    for plen in boundary_lengths(svc):
        for version in (4, 6):
            for kind in ("route", "unknown"):
                spec = g.spec(svc, plen=plen, tag_kind=kind, version=version)
                yield Case(f"sweep-window-{plen}", P.build(spec).bytes())


def truncation_sweep(g: FrameGen, svc: Service) -> Iterator[Case]:
    """Every prefix of a few frames, through the headers and the tag (and just short of the end)."""
    from .frames import Case

    plen = min(w.min for w in svc.windows)
    bases = [
        replace(
            g.spec(svc, plen=plen, tag_kind="route", version=4),
            tpids=(P.ETH_P_8021AD, P.ETH_P_8021Q),
            ipv4_opt_words=3,
            tcp_doff=7,
        ),
        replace(
            g.spec(svc, plen=plen, tag_kind="route", version=6),
            tpids=(P.ETH_P_8021Q,),
            exts=(Ext(P.HOP, 1), Ext(P.FRAGMENT), Ext(P.DSTOPTS)),
        ),
        replace(
            g.spec(svc, plen=plen, tag_kind="route", version=6),
            exts=(Ext(P.ROUTING, 0), Ext(P.DSTOPTS, 2)),
            padding=b"\0" * 6,
        ),
    ]
    for spec in bases:
        f = P.build(spec)
        stop = min(len(f.data), f.payload + svc.tag.offset + svc.tag.length + 4)
        cuts = [*range(14, stop), f.ip_end - 1, len(f.data) - 1, len(f.data)]
        for cut in sorted(set(cuts)):
            if cut <= len(f.data):
                yield Case(f"sweep-trunc-{cut}", f.bytes()[:cut])


def header_sweep(g: FrameGen, svc: Service) -> Iterator[Case]:
    """IHL 0..15, TCP doff 0..15 and IPv4 options, VLAN stacks 0..3, IPv6 chains 0..5."""
    from .frames import Case

    for ihl in range(16):
        f = P.build(g.spec(svc, version=4))
        f.data[f.l3] = 0x40 | ihl
        yield Case(f"sweep-ihl-{ihl}", f.bytes())
    for words in range(11):
        yield Case(
            f"sweep-ipopt-{words}",
            P.build(replace(g.spec(svc, version=4), ipv4_opt_words=words)).bytes(),
        )
    for doff in range(16):
        f = P.build(replace(g.spec(svc), tcp_doff=max(doff, 5)))
        if svc.protocol == "tcp":
            f.data[f.l4 + 12] = doff << 4
        yield Case(f"sweep-doff-{doff}", f.bytes())
    stacks: list[tuple[int, ...]] = [()]
    for depth in range(1, 4):
        stacks += [tuple(P.TPIDS[(i >> k) & 1] for k in range(depth)) for i in range(1 << depth)]
    for tpids in stacks:
        yield Case(f"sweep-vlan-{len(tpids)}", P.build(replace(g.spec(svc), tpids=tpids)).bytes())
    kinds = (P.HOP, P.ROUTING, P.DSTOPTS, P.FRAGMENT)
    for count in range(6):
        for first in kinds:
            exts = tuple(Ext(kinds[(kinds.index(first) + i) % 4]) for i in range(count))
            spec = replace(g.spec(svc, version=6), exts=exts)
            yield Case(f"sweep-ext-{count}", P.build(spec).bytes())


def fragment_sweep(g: FrameGen, svc: Service) -> Iterator[Case]:
    """IPv4 flag combinations and offsets; IPv6 fragment headers with offset 0 / not 0, M 0 / 1."""
    from .frames import Case

    for flags in (
        0,
        P.IPV4_DF,
        P.IPV4_RESERVED,
        P.IPV4_MF,
        P.IPV4_MF | P.IPV4_DF,
        P.IPV4_MF | P.IPV4_RESERVED,
        1,
        P.IPV4_MF | 1,
        0x1FFF,
        0xFFFF,
        8,
        0x1000,
    ):
        yield Case(
            f"sweep-v4frag-{flags:04x}",
            P.build(replace(g.spec(svc, version=4), ipv4_frag=flags)).bytes(),
        )
    for word in (0, 1, 6, 7, 8, 9, 0xFFF8, 0xFFF9, 0x0010):
        spec = replace(g.spec(svc, version=6), exts=(Ext(P.FRAGMENT, frag=word),))
        yield Case(f"sweep-v6frag-{word:04x}", P.build(spec).bytes())


def sweep_cases(g: FrameGen) -> Iterator[Case]:
    for svc in g.services:
        yield from window_sweep(g, svc)
        yield from truncation_sweep(g, svc)
        yield from header_sweep(g, svc)
        yield from fragment_sweep(g, svc)
