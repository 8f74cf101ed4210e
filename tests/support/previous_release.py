"""The previous release's program (one per interface, layout version 1), kept verbatim in
tests/support/previous/ as the reference of the migration tests and the benchmarks."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from mplexctl import constants as C
from mplexctl.backend import netlink
from mplexctl.backend.loader import Loaded, compile_and_load
from mplexctl.backend.program import ZERO, ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build

HERE = Path(__file__).resolve().parent / "previous"
INCLUDES = {
    "mplex_common_v1.h": HERE / "mplex_common_v1.h",
    "mplex_parse_v1.h": HERE / "mplex_parse_v1.h",
}


def source(build: Build) -> str:
    """The previous program's C text for `build`'s services (its config header)."""
    text = (HERE / "mplex_v1.c").read_text()
    text = text.replace('#include "mplex_config.h"', build.header.rstrip("\n"))
    for name, path in INCLUDES.items():
        text = text.replace(f'#include "{name}"', path.read_text().rstrip("\n"))
    return text


def previous_build(build: Build) -> Build:
    text = source(build)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return dataclasses.replace(build, source=text, program_digest=digest)


def load(build: Build) -> tuple[Loaded, ProgramMaps]:
    """Compile, load and fill the previous program for `build` (not attached), its metadata
    marked as the previous layout."""
    old = previous_build(build)
    loaded = compile_and_load(old)
    pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
    pm.fill(old)
    raw = bytearray(pm.maps[C.MAP_META].lookup(ZERO) or b"")
    layout.U32.pack_into(raw, 0, C.MAGIC_PREVIOUS & 0xFFFFFFFF)
    layout.U32.pack_into(raw, 4, C.MAGIC_PREVIOUS >> 32)
    pm.maps[C.MAP_META].update(ZERO, bytes(raw))
    return loaded, pm


def attach_previous(build: Build, iface: str, mode: str = "native") -> int:
    """What the previous release left on `iface`: its own program and maps. Call inside the
    interface's netns; returns the program id."""
    loaded, pm = load(build)
    try:
        link = netlink.get_link(iface)
        assert link is not None, iface
        netlink.attach(link, loaded.prog_fd, mode)
        return pm.prog_id
    finally:
        loaded.close()
