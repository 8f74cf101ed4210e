"""Stage 3: Config -> Build. Pure and deterministic: the same Config gives identical bytes."""

from __future__ import annotations

import hashlib
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import Any, Literal

from mplexctl import constants as C
from mplexctl.compiler import layout
from mplexctl.compiler.source import render_config_header, render_source
from mplexctl.config.model import Config, Routes, Service, tag_text


@dataclass(frozen=True)
class ServiceEntry:
    """A compiled service: its row of the mplex_svcs array map (index = compiled service
    index) and its route table. Desired (from a Build) and live (probed) alike."""

    index: int
    name: str
    protocol: str
    port: int
    windows: tuple[tuple[int, int], ...]
    tag_offset: int
    tag_length: int
    unmatched: str
    routes: Routes  # tag bytes -> port
    reply: str = "none"  # none | restore

    def behaviour(self) -> tuple[Any, ...]:
        """What a service row holds (everything but the routes)."""
        return (self.windows, self.tag_offset, self.tag_length, self.unmatched, self.reply)

    @cached_property
    def routes_digest(self) -> str:
        """Digest of the route table, whatever its order: tags (as big-endian integers of
        tag_length bytes, which sort faster than bytes) in order, then their ports."""
        big: Iterator[Literal["big"]] = repeat("big")
        tag_ints = map(int.from_bytes, self.routes, big)  # a tag fits a u64
        keyed = dict(zip(tag_ints, self.routes.values(), strict=True))
        order = sorted(keyed)
        h = hashlib.sha256(b"%d:%d:" % (self.tag_length, len(order)))
        h.update(array("Q", order).tobytes())
        h.update(array("H", map(keyed.__getitem__, order)).tobytes())
        return h.hexdigest()

    def readable(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "port": self.port,
            "windows": [{"min": lo, "max": hi} for lo, hi in self.windows],
            "tag": {"offset": self.tag_offset, "length": self.tag_length},
            "unmatched": self.unmatched,
            "reply": self.reply,
            "routes": {tag_text(t): self.routes[t] for t in sorted(self.routes)},
        }

    @property
    def flags(self) -> int:
        return (
            C.SVC_F_VALID
            | (C.SVC_F_PASS_UNMATCHED if self.unmatched == "pass" else 0)
            | (C.SVC_F_RESTORE if self.reply == "restore" else 0)
        )

    def value(
        self, max_windows: int, slot: int = 0, probes: int = 0, seed: int = 0, hashed: bool = False
    ) -> bytes:
        """The service row: `probes` and `seed` describe its route table (layout 3);
        `hashed`: in the format of a layout-1/2 program (a previous release)."""
        return layout.pack_svc(
            self.tag_offset,
            self.tag_length,
            self.flags,
            list(self.windows),
            slot,
            max_windows,
            probes,
            seed,
            hashed,
        )


@dataclass(frozen=True)
class RouteEntry:
    """One route: (service index, tag) -> port. The slot is chosen at apply time."""

    service: int
    tag: bytes
    port: int

    def key(self, slot: int = 0) -> bytes:
        return layout.route_key(self.service, slot, self.tag)


@dataclass(frozen=True)
class Build:
    config: Config
    defines: tuple[tuple[str, str], ...]
    header: str  # final text of mplex_config.h
    source: str  # final C source handed to BCC
    services: tuple[ServiceEntry, ...]  # by index, each with its route table
    max_windows: int
    program_digest: str  # identifies the program (defines + C source)
    digest: str  # identifies the whole generation (program + map contents)

    @property
    def generation(self) -> str:
        return self.digest[:12]

    @property
    def programs(self) -> tuple[str, ...]:
        """The entries this build loads: XDP always (it fills the maps), TC ingress for a
        hook: tc interface, TC egress for a service with reply: restore."""
        out = [C.PROG_NAME]
        if "tc" in self.config.hooks:
            out.append(C.PROG_TC_IN)
        if self.config.restores:
            out.append(C.PROG_TC_OUT)
        return tuple(out)

    @property
    def routes(self) -> tuple[RouteEntry, ...]:
        """Every route, one object each, by service and tag (for people and tests)."""
        return tuple(
            RouteEntry(s.index, tag, s.routes[tag])
            for s in self.services
            for tag in sorted(s.routes)
        )

    def service_by_name(self, name: str) -> ServiceEntry:
        return next(s for s in self.services if s.name == name)

    def maps_readable(self) -> dict[str, Any]:
        names = {s.index: s.name for s in self.services}
        return {
            C.MAP_SERVICES: [
                {
                    "index": s.index,
                    "name": s.name,
                    "protocol": s.protocol,
                    "port": s.port,
                    "windows": [{"min": lo, "max": hi} for lo, hi in s.windows],
                    "tag": {"offset": s.tag_offset, "length": s.tag_length},
                    "unmatched": s.unmatched,
                    "value": s.value(self.max_windows).hex(),
                }
                for s in self.services
            ],
            C.MAP_ROUTES: [
                {
                    "service": names[r.service],
                    "tag": tag_text(r.tag),
                    "port": r.port,
                    "key": r.key().hex(),
                    "value": layout.route_value(r.port).hex(),
                }
                for r in self.routes
            ],
        }


def _ordered(config: Config) -> list[Service]:
    # Sorted by name so reordering services in the file does not change the program.
    return sorted(config.services, key=lambda s: s.name)


def compute_defines(config: Config) -> tuple[tuple[str, str], ...]:
    services = _ordered(config)

    def xlist(proto: str) -> str:
        cases = [f"X({s.port}, {i})" for i, s in enumerate(services) if s.protocol == proto]
        return " ".join(cases) if cases else "/* none */"

    return (
        ("MPLEX_NSERVICES", str(len(services))),
        ("MPLEX_MAX_WINDOWS", str(config.limits.windows)),
        ("MPLEX_MAX_ROUTES", str(config.limits.routes)),
        ("MPLEX_ROUTES_MAP_SIZE", str(2 * config.limits.routes)),  # route counter indexes
        ("MPLEX_ROUTE_BITS", str(C.route_bits(config.limits.routes))),
        ("MPLEX_ROUTE_SLOTS", str((1 << C.route_bits(config.limits.routes)) + C.ROUTE_PROBES_MAX)),
        ("MPLEX_IF_SLOTS", str(C.if_slots(len(config.interfaces)))),
        ("MPLEX_HAVE_UDP", "1" if any(s.protocol == "udp" for s in services) else "0"),
        ("MPLEX_HAVE_TCP", "1" if any(s.protocol == "tcp" for s in services) else "0"),
        ("MPLEX_UDP_SERVICES(X)", xlist("udp")),
        ("MPLEX_TCP_SERVICES(X)", xlist("tcp")),
        ("MPLEX_HAVE_TC_INGRESS", "1" if "tc" in config.hooks else "0"),
        ("MPLEX_HAVE_RESTORE", "1" if config.restores else "0"),
        ("MPLEX_FLOWS_MAP_SIZE", str(config.limits.flows)),
    )


def compile_config(config: Config) -> Build:
    services = _ordered(config)
    defines = compute_defines(config)
    header = render_config_header(
        defines, [(i, s.name, s.protocol, s.port) for i, s in enumerate(services)]
    )
    source = render_source(header)
    entries = tuple(
        ServiceEntry(
            i,
            s.name,
            s.protocol,
            s.port,
            tuple((w.min, w.max) for w in s.windows),
            s.tag.offset,
            s.tag.length,
            s.unmatched,
            s.table,
            s.reply,
        )
        for i, s in enumerate(services)
    )
    program_digest = hashlib.sha256(source.encode()).hexdigest()
    canon = json.dumps(
        {
            "program": program_digest,
            "services": [s.value(config.limits.windows).hex() for s in entries],
            "routes": [s.routes_digest for s in entries],
            "interfaces": [[i.name, i.xdp_mode, i.hook] for i in config.interfaces],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return Build(
        config=config,
        defines=defines,
        header=header,
        source=source,
        services=entries,
        max_windows=config.limits.windows,
        program_digest=program_digest,
        digest=hashlib.sha256(canon.encode()).hexdigest(),
    )
