"""Frozen data flowing between probe, planner and applier: desired and live state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from mplexctl.compiler.build import Build, ServiceEntry
from mplexctl.config.model import tag_text


@dataclass(frozen=True)
class ServiceState(ServiceEntry):
    """A service row plus its routes: what the data plane does for one service (comparable
    between desired and live)."""

    routes: tuple[tuple[bytes, int], ...]  # sorted (tag, port)

    def behaviour(self) -> tuple[Any, ...]:
        """What a service row holds (everything but the routes)."""
        return (self.windows, self.tag_offset, self.tag_length, self.unmatched)

    def readable(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "port": self.port,
            "windows": [f"{lo}..{hi}" for lo, hi in self.windows],
            "tag": {"offset": self.tag_offset, "length": self.tag_length},
            "unmatched": self.unmatched,
            "routes": {tag_text(t): p for t, p in self.routes},
        }


@dataclass(frozen=True)
class ProgramState:
    """An mplex program found on an interface, read back from its maps."""

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

    @property
    def foreign(self) -> bool:
        return self.prog_id != 0 and self.program is None


@dataclass(frozen=True)
class LiveState:
    interfaces: dict[str, InterfaceState] = field(default_factory=dict)

    def mplex_interfaces(self) -> list[InterfaceState]:
        return [i for i in self.interfaces.values() if i.program is not None]


def desired_services(build: Build) -> tuple[ServiceState, ...]:
    by_index: dict[int, list[tuple[bytes, int]]] = {s.index: [] for s in build.services}
    for r in build.routes:
        by_index[r.service].append((r.tag, r.port))
    return tuple(
        ServiceState(**vars(s), routes=tuple(sorted(by_index[s.index]))) for s in build.services
    )


def content_digest(services: tuple[ServiceState, ...]) -> str:
    """Digest of what the data plane does (rows + routes), independent of slots and rows."""
    h = hashlib.sha256()
    for s in services:
        h.update(repr((s.index, s.name, s.protocol, s.port, s.behaviour())).encode())
        for tag, port in s.routes:
            h.update(len(tag).to_bytes(1, "little") + tag + port.to_bytes(2, "big"))
    return h.hexdigest()


def readable_state(
    services: tuple[ServiceState, ...] | None, mode: str | None, generation: str | None
) -> dict[str, Any]:
    return {
        "mode": mode,
        "generation": generation,
        "services": {s.name: s.readable() for s in services or ()},
    }
