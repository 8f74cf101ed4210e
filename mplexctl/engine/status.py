"""`status`: per interface, the program, its generation and its counters (read from maps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mplexctl import constants as C
from mplexctl.backend import netlink
from mplexctl.backend.program import ProgramMaps, RouteDump
from mplexctl.compiler import layout
from mplexctl.config.model import tag_text
from mplexctl.engine.probe import opened
from mplexctl.engine.state import ProgramState


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    protocol: str
    port: int
    verdicts: dict[str, Counter]  # verdict name -> counter
    routes: dict[str, tuple[int, Counter]]  # tag text -> (port, counter)

    @property
    def total(self) -> Counter:
        return Counter(
            sum(c.packets for c in self.verdicts.values()),
            sum(c.bytes for c in self.verdicts.values()),
        )


@dataclass(frozen=True)
class InterfaceStatus:
    name: str
    prog_id: int
    mode: str | None
    owner: str  # mplex | foreign | none
    prog_name: str
    generation: str | None
    applied_ns: int
    services: tuple[ServiceStatus, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "interface": self.name,
            "prog_id": self.prog_id,
            "mode": self.mode,
            "owner": self.owner,
            "program": self.prog_name,
            "generation": self.generation,
            "applied_unix_ns": self.applied_ns,
            "services": {
                s.name: {
                    "protocol": s.protocol,
                    "port": s.port,
                    "packets": s.total.packets,
                    "bytes": s.total.bytes,
                    "verdicts": {
                        v: {"packets": c.packets, "bytes": c.bytes} for v, c in s.verdicts.items()
                    },
                    "routes": {
                        t: {"port": p, "packets": c.packets, "bytes": c.bytes}
                        for t, (p, c) in s.routes.items()
                    },
                }
                for s in self.services
            },
        }


def _services(pm: ProgramMaps, prog: ProgramState, dump: RouteDump) -> tuple[ServiceStatus, ...]:
    counters = pm.service_counters()
    out = []
    for svc in prog.services:
        routes: dict[str, tuple[int, Counter]] = {}
        for i in dump.indexes((svc.index << 1) | prog.route_slot[svc.index]):
            key, values = dump.key_of(i), dump.values_of(i)
            pk = by = 0
            for v in values:
                _p, _a, _b, p, b = layout.ROUTE.unpack(v)
                pk, by = pk + p, by + b
            tag = key[4 : 4 + svc.tag_length]
            routes[tag_text(tag)] = (layout.route_port(values[0]), Counter(pk, by))
        verdicts = {
            name: Counter(*counters.get((svc.index, i), (0, 0)))
            for i, name in enumerate(C.VERDICTS)
        }
        out.append(
            ServiceStatus(svc.name, svc.protocol, svc.port, verdicts, dict(sorted(routes.items())))
        )
    return tuple(out)


def status(names: list[str] | None = None) -> list[InterfaceStatus]:
    """Interfaces carrying XDP programs (or the named ones), with mplex counters."""
    out = []
    for link in netlink.list_links():
        if names and link.name not in names:
            continue
        if not names and link.prog_id == 0:
            continue
        with opened(link) as (state, pm, dump):
            prog = state.program
            services = _services(pm, prog, dump) if pm and prog and dump else ()
        owner = "none" if state.prog_id == 0 else ("mplex" if prog else "foreign")
        out.append(
            InterfaceStatus(
                state.name,
                state.prog_id,
                state.mode,
                owner,
                state.prog_name,
                prog.generation if prog else None,
                prog.applied_ns if prog else 0,
                services,
            )
        )
    return out
