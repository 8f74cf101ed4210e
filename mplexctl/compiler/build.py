"""Stage 3: Config -> Build. Pure and deterministic: the same Config gives identical bytes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mplexctl import constants as C
from mplexctl.compiler import layout
from mplexctl.compiler.source import render_config_header, render_source
from mplexctl.config.model import Config, Service


@dataclass(frozen=True)
class ServiceEntry:
    """One row of the mplex_svcs array map (index = compiled service index)."""

    index: int
    name: str
    protocol: str
    port: int
    windows: tuple[tuple[int, int], ...]
    tag_offset: int
    tag_length: int
    unmatched: str

    @property
    def flags(self) -> int:
        return C.SVC_F_VALID | (C.SVC_F_PASS_UNMATCHED if self.unmatched == "pass" else 0)

    def value(self, max_windows: int, slot: int = 0) -> bytes:
        return layout.pack_svc(
            self.tag_offset, self.tag_length, self.flags, list(self.windows), slot, max_windows
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
    services: tuple[ServiceEntry, ...]
    routes: tuple[RouteEntry, ...]
    max_windows: int
    program_digest: str  # identifies the program (defines + C source)
    digest: str  # identifies the whole generation (program + map contents)

    @property
    def generation(self) -> str:
        return self.digest[:12]

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
                    "windows": [list(w) for w in s.windows],
                    "tag_offset": s.tag_offset,
                    "tag_length": s.tag_length,
                    "unmatched": s.unmatched,
                    "value": s.value(self.max_windows).hex(),
                }
                for s in self.services
            ],
            C.MAP_ROUTES: [
                {
                    "service": names[r.service],
                    "tag": _tag_text(r.tag),
                    "port": r.port,
                    "key": r.key().hex(),
                    "value": layout.route_value(r.port).hex(),
                }
                for r in self.routes
            ],
        }


def _tag_text(tag: bytes) -> str:
    from mplexctl.config.model import tag_text

    return tag_text(tag)


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
        ("MPLEX_ROUTES_MAP_SIZE", str(2 * config.limits.routes)),
        ("MPLEX_HAVE_UDP", "1" if any(s.protocol == "udp" for s in services) else "0"),
        ("MPLEX_HAVE_TCP", "1" if any(s.protocol == "tcp" for s in services) else "0"),
        ("MPLEX_UDP_SERVICES(X)", xlist("udp")),
        ("MPLEX_TCP_SERVICES(X)", xlist("tcp")),
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
        )
        for i, s in enumerate(services)
    )
    routes = tuple(RouteEntry(i, r.tag, r.port) for i, s in enumerate(services) for r in s.routes)
    program_digest = hashlib.sha256(source.encode()).hexdigest()
    canon = json.dumps(
        {
            "program": program_digest,
            "services": [s.value(config.limits.windows).hex() for s in entries],
            "routes": [[r.key().hex(), r.port] for r in routes],
            "interfaces": [[i.name, i.xdp_mode] for i in config.interfaces],
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
        routes=routes,
        max_windows=config.limits.windows,
        program_digest=program_digest,
        digest=hashlib.sha256(canon.encode()).hexdigest(),
    )
