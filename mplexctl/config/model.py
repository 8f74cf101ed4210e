"""The validated configuration: frozen data flowing from `config` into the compiler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from mplexctl import constants as C
from mplexctl.errors import Problem

Routes = Mapping[bytes, int]  # tag bytes -> destination port (a read-only MappingProxyType)


@dataclass(frozen=True, order=True)
class Window:
    """An inclusive payload-length window."""

    min: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}..{self.max}"


@dataclass(frozen=True)
class TagSpec:
    """Where the tag sits in the L4 payload."""

    offset: int
    length: int


@dataclass(frozen=True, order=True)
class Route:
    """One tag -> destination port mapping. `tag` holds the decoded bytes."""

    tag: bytes
    port: int

    @property
    def tag_text(self) -> str:
        return tag_text(self.tag)


@dataclass(frozen=True)
class Service:
    name: str
    protocol: str  # "udp" | "tcp"
    port: int
    windows: tuple[Window, ...]  # sorted, non-overlapping
    tag: TagSpec
    table: Routes  # the routes, in file order
    unmatched: str  # "drop" | "pass"
    reply: str = "none"  # "none" | "restore"

    @property
    def proto_number(self) -> int:
        return C.PROTO_NUMBERS[self.protocol]

    @cached_property
    def routes(self) -> tuple[Route, ...]:
        """The routes sorted by tag, one object each: for people and tests. The compiler
        reads `table` (one object per route of a big table costs more than the rest of a
        one-route apply)."""
        return tuple(Route(tag, port) for tag, port in sorted(self.table.items()))


@dataclass(frozen=True)
class Interface:
    name: str
    xdp_mode: str  # "auto" | "native" | "generic" (hook xdp)
    hook: str = "xdp"  # "xdp" | "tc"


@dataclass(frozen=True)
class Limits:
    routes: int = C.DEFAULT_MAX_ROUTES
    services: int = C.DEFAULT_MAX_SERVICES
    windows: int = C.DEFAULT_MAX_WINDOWS
    flows: int = C.DEFAULT_FLOWS


@dataclass(frozen=True)
class Packet:
    """A test packet of an expectation (`expect[i].packet`, `explain --packet`). Addresses
    and the source port are fixed (contract/packet.py); the payload is `payload`, or `length`
    zero bytes with `tag` written at the tag offset of the service the port selects."""

    protocol: str  # "udp" | "tcp"
    port: int  # destination port
    length: int | None = None  # L4 payload bytes (None: len(payload))
    tag: bytes | None = None  # decoded
    payload: bytes | None = None
    ip: int = 4
    vlan: tuple[int, ...] = ()
    fragment: str | None = None  # "first" | "later"
    truncate: int = 0  # bytes cut off the end of the frame (a damaged frame: drop_malformed)


@dataclass(frozen=True)
class Expectation:
    """One `expect:` item: what must happen to `packet`. Not part of the program or the maps:
    the build digest and the plan never look at it."""

    index: int
    line: int
    packet: Packet
    verdict: str  # "pass" (not a service packet) or one of constants.VERDICTS
    port: int | None = None  # the new destination port, for verdict rewrite
    name: str | None = None

    @property
    def label(self) -> str:
        return f"expect[{self.index}]" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Config:
    interfaces: tuple[Interface, ...]
    services: tuple[Service, ...]  # in file order
    limits: Limits
    source: str = "<config>"
    version: int = 1
    expectations: tuple[Expectation, ...] = ()
    # what validate warns about (the file is valid): e.g. every tcp service
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    @property
    def hooks(self) -> frozenset[str]:
        """The ingress hooks the file's interfaces use."""
        return frozenset(i.hook for i in self.interfaces)

    @property
    def restores(self) -> bool:
        """Whether a service has `reply: restore` (the egress program is needed)."""
        return any(s.reply == "restore" for s in self.services)


def tag_text(tag: bytes) -> str:
    """The canonical spelling of a tag: printable ASCII as is, anything else as hex:."""
    if all(0x20 <= b < 0x7F for b in tag) and not tag.startswith(b"hex:"):
        return tag.decode("ascii")
    return "hex:" + tag.hex()
