"""The validated configuration: frozen data flowing from `config` into the compiler."""

from __future__ import annotations

from dataclasses import dataclass

from mplexctl import constants as C


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
    routes: tuple[Route, ...]  # sorted by tag bytes
    unmatched: str  # "drop" | "pass"

    @property
    def proto_number(self) -> int:
        return C.PROTO_NUMBERS[self.protocol]


@dataclass(frozen=True)
class Interface:
    name: str
    xdp_mode: str  # "auto" | "native" | "generic"


@dataclass(frozen=True)
class Limits:
    routes: int = C.DEFAULT_MAX_ROUTES
    services: int = C.DEFAULT_MAX_SERVICES
    windows: int = C.DEFAULT_MAX_WINDOWS


@dataclass(frozen=True)
class Config:
    interfaces: tuple[Interface, ...]
    services: tuple[Service, ...]  # in file order
    limits: Limits
    source: str = "<config>"
    version: int = 1


def tag_text(tag: bytes) -> str:
    """The canonical spelling of a tag: printable ASCII as is, anything else as hex:."""
    if all(0x20 <= b < 0x7F for b in tag) and not tag.startswith(b"hex:"):
        return tag.decode("ascii")
    return "hex:" + tag.hex()
