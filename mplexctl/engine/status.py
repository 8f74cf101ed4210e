"""`status`: per interface, the program, its generation and its counters (read from maps)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mplexctl import constants as C
from mplexctl.backend import netlink
from mplexctl.backend.program import RouteDump
from mplexctl.compiler import layout
from mplexctl.config.model import tag_text
from mplexctl.engine.probe import all_tc_hooks, interface_state, opened_program
from mplexctl.engine.state import ProgramState
from mplexctl.errors import HostError


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
    replies: Counter | None = None  # reply: restore: replies restored leaving here

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
    via: str = ""  # mode tc: how the program is attached (tcx | clsact); not in --json

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
                    **(
                        {}
                        if s.replies is None
                        else {
                            "replies_restored": {
                                "packets": s.replies.packets,
                                "bytes": s.replies.bytes,
                            }
                        }
                    ),
                }
                for s in self.services
            },
        }


def _routes(prog: ProgramState, dump: RouteDump) -> dict[str, dict[str, tuple[int, Counter]]]:
    """service name -> tag text -> (port, counter): route counters are kept per route,
    summed over the interfaces that run the program."""
    out = {}
    for svc in prog.services:
        routes: dict[str, tuple[int, Counter]] = {}
        for i in dump.indexes(layout.route_prefix(svc.index, prog.route_slot[svc.index])):
            key, values = dump.key_of(i), dump.values_of(i)
            pk = by = 0
            for v in values:
                _p, _a, _b, p, b = layout.ROUTE.unpack(v)
                pk, by = pk + p, by + b
            tag = key[4 : 4 + svc.tag_length]
            routes[tag_text(tag)] = (layout.route_port(values[0]), Counter(pk, by))
        out[svc.name] = dict(sorted(routes.items()))
    return out


def _services(
    prog: ProgramState,
    counters: dict[tuple[int, int], tuple[int, int]],
    routes: dict[str, dict[str, tuple[int, Counter]]],
    replies: dict[int, tuple[int, int]],
) -> tuple[ServiceStatus, ...]:
    out = []
    for svc in prog.services:
        verdicts = {
            name: Counter(*counters.get((svc.index, i), (0, 0)))
            for i, name in enumerate(C.VERDICTS)
        }
        restored = Counter(*replies.get(svc.index, (0, 0))) if svc.reply == "restore" else None
        out.append(
            ServiceStatus(svc.name, svc.protocol, svc.port, verdicts, routes[svc.name], restored)
        )
    return tuple(out)


def status(names: list[str] | None = None) -> list[InterfaceStatus]:
    """Interfaces carrying XDP programs (or the named ones), with mplex counters. A program
    shared by several interfaces is read once; each interface reports its own verdict
    counters (its counter slot) and the program's route counters."""
    every = netlink.list_links()
    unknown = sorted(set(names or ()) - {link.name for link in every})
    if unknown:
        if len(unknown) == 1:
            raise HostError(f"interface {unknown[0]} does not exist")
        raise HostError(f"interfaces {', '.join(unknown)} do not exist")
    # An interface with mplex at its TC ingress (hook: tc) reports that program.
    ids = {}
    hooks = all_tc_hooks(every)
    for link in every:
        tc = hooks[link.index].ingress
        ids[link.name] = (link, tc or link.prog_id, tc != 0)
    vias = {index: h.ingress_via for index, h in hooks.items()}
    chosen = [v for k, v in ids.items() if (k in names if names else v[1] != 0)]
    read: dict[int, tuple[ProgramState | None, str, Any, Any, Any]] = {}
    for prog_id in dict.fromkeys(p for _, p, _ in chosen if p):
        with opened_program(prog_id) as (prog, pm, dump, name):
            if prog is None or pm is None or dump is None:
                read[prog_id] = (None, name, {}, {}, {})
                continue
            by_slot, replies = pm.counters_by_slot(), pm.replies_by_slot()
            read[prog_id] = (prog, pm.name or name, by_slot, _routes(prog, dump), replies)
    out = []
    for link, prog_id, on_tc in chosen:
        prog, name, by_slot, routes, replies = read.get(prog_id, (None, "", {}, {}, {}))
        if on_tc:
            link = dataclasses.replace(link, prog_id=prog_id, mode="tc")
        state = interface_state(link, prog, name)
        services: tuple[ServiceStatus, ...] = ()
        if prog is not None:
            if prog.layout == C.LAYOUT_VERSION:
                slot = prog.if_slots.get(link.index)
                counters = by_slot.get(slot, {}) if slot is not None else {}
            else:  # a previous release's program: its counters are this interface's
                counters = by_slot.get(0, {})
            slot_replies = replies.get(prog.if_slots.get(link.index, -1), {})
            services = _services(prog, counters, routes, slot_replies)
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
                vias[link.index] if on_tc else "",
            )
        )
    return out
