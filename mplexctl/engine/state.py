"""Frozen data flowing between probe, planner and applier: desired and live state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mplexctl import constants as C
from mplexctl.compiler.build import Build, ServiceEntry

# A service as the data plane sees it (row + routes): the same shape desired and live.
ServiceState = ServiceEntry


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
    config_digest: str
    seq: int
    applied_ns: int
    services: tuple[ServiceState, ...]
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

    @property
    def generation(self) -> str:
        return self.config_digest[:12]


@dataclass(frozen=True)
class InterfaceState:
    name: str
    index: int
    mode: str | None  # native | generic | ... | None
    prog_id: int  # 0: nothing attached
    prog_name: str = ""
    program: ProgramState | None = None  # set when the attached program is mplex's
    up: bool = field(default=True, compare=False)  # administratively up

    @property
    def foreign(self) -> bool:
        return self.prog_id != 0 and self.program is None


@dataclass(frozen=True)
class LiveState:
    interfaces: dict[str, InterfaceState] = field(default_factory=dict)

    def mplex_interfaces(self) -> list[InterfaceState]:
        return [i for i in self.interfaces.values() if i.program is not None]

    def programs(self) -> dict[int, ProgramState]:
        """prog id -> the mplex programs attached anywhere in the namespace (normally one)."""
        return {i.prog_id: i.program for i in self.interfaces.values() if i.program is not None}

    def carriers(self, prog_id: int) -> list[InterfaceState]:
        """The interfaces program prog_id is attached to."""
        return [i for i in self.interfaces.values() if i.prog_id == prog_id]


def desired_services(build: Build) -> tuple[ServiceState, ...]:
    return build.services


def readable_state(
    services: tuple[ServiceState, ...] | None, mode: str | None, generation: str | None
) -> dict[str, Any]:
    return {
        "mode": mode,
        "generation": generation,
        "services": {s.name: s.readable() for s in services or ()},
    }
