"""Frozen data flowing between probe, planner and applier: desired and live state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mplexctl import constants as C
from mplexctl.compiler.build import Build, ServiceEntry


@dataclass(frozen=True)
class RouteImage:
    """The route map as one probe read it: packed keys and CPU 0's ports, in dump order
    (what accel/reprobe.py compares the verifying re-probe with)."""

    keys: bytes
    ports: bytes  # 2 bytes per entry, network byte order
    key_size: int


@dataclass(frozen=True)
class ProgramState:
    """An mplex program found on one or more interfaces, read back from its maps once."""

    prog_id: int
    program_digest: str
    build_digest: str
    seq: int
    applied_ns: int
    services: tuple[ServiceEntry, ...]
    route_slot: tuple[int, ...]  # per service: the route slot its live row uses
    stray_routes: int  # route entries outside any live slot (an interrupted apply)
    rows_in_sync: bool  # every live row decodes (no half-written service)
    source_digest: str = ""  # config file this generation was applied from
    content_digest: str = ""  # services + routes as that apply wrote them
    n_interfaces: int = 0  # interfaces in that file
    # (limits.routes, limits.windows) as the program's maps are sized; None: not known
    map_limits: tuple[int, int] | None = field(default=None, compare=False)
    image: RouteImage | None = field(default=None, compare=False, repr=False)
    layout: int = C.LAYOUT_VERSION  # 1: a previous release's per-interface program
    # ifindex -> counter slot (verdict counters of that interface)
    if_slots: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    slot_capacity: int = C.IF_SLOTS_MIN  # counter slots compiled in (slot 0 included)
    # Entries of this generation found attached somewhere: program name -> id. prog_id is
    # the generation's id in the plan (its XDP entry's when attached, else its lowest).
    progs: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def generation(self) -> str:
        return self.build_digest[:12]


@dataclass(frozen=True)
class InterfaceState:
    """An interface: its XDP attachment (mode, prog_id, program), and mplex's TC ones."""

    name: str
    index: int
    mode: str | None  # XDP: native | generic | ... | None
    prog_id: int  # XDP: 0: nothing attached
    prog_name: str = ""
    program: ProgramState | None = None  # set when the attached XDP program is mplex's
    up: bool = field(default=True, compare=False)  # administratively up
    tc_id: int = 0  # mplex's program at the TC ingress hook (hook: tc), 0: none
    tc_program: ProgramState | None = None
    egress_id: int = 0  # mplex's reply-path program at the TC egress hook, 0: none
    egress_program: ProgramState | None = None
    tc_via: str = field(default="", compare=False)  # how tc_id is attached: tcx | clsact
    egress_via: str = field(default="", compare=False)

    @property
    def foreign(self) -> bool:
        return self.prog_id != 0 and self.program is None

    @property
    def hook(self) -> str | None:
        """The hook mplex's ingress program runs at here (tc wins over a leftover XDP one)."""
        if self.tc_program is not None:
            return "tc"
        return "xdp" if self.program is not None else None

    @property
    def ingress(self) -> ProgramState | None:
        """The generation mplex's ingress program here belongs to."""
        return self.tc_program if self.tc_program is not None else self.program

    @property
    def ingress_id(self) -> int:
        return self.tc_id if self.tc_program is not None else self.prog_id

    @property
    def ingress_mode(self) -> str | None:
        """XDP mode, or "tc": how status shows the attachment."""
        return "tc" if self.tc_program is not None else self.mode

    def generations(self) -> list[ProgramState]:
        return [p for p in (self.program, self.tc_program, self.egress_program) if p is not None]


@dataclass(frozen=True)
class LiveState:
    interfaces: dict[str, InterfaceState] = field(default_factory=dict)

    def mplex_interfaces(self) -> list[InterfaceState]:
        return [i for i in self.interfaces.values() if i.generations()]

    def programs(self) -> dict[int, ProgramState]:
        """generation id -> the mplex generations attached anywhere in the namespace
        (normally one; its XDP and TC entries share one set of maps)."""
        return {p.prog_id: p for i in self.interfaces.values() for p in i.generations()}

    def carriers(self, prog_id: int) -> list[InterfaceState]:
        """The interfaces whose ingress runs generation prog_id (at XDP or TC)."""
        return [
            i
            for i in self.interfaces.values()
            if i.ingress is not None and i.ingress.prog_id == prog_id
        ]


def desired_services(build: Build) -> tuple[ServiceEntry, ...]:
    return build.services


def readable_state(
    services: tuple[ServiceEntry, ...] | None, mode: str | None, generation: str | None
) -> dict[str, Any]:
    return {
        "mode": mode,
        "generation": generation,
        "services": {s.name: s.readable() for s in services or ()},
    }
