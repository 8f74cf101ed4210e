"""The previous releases' programs, kept verbatim as the references of the migration tests
and the benchmarks: layout version 1 (one program per interface, tests/support/previous/) and
layout version 2 (one per namespace, routes in a per-CPU hash, tests/support/previous_v2/)."""

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
HERE_V2 = Path(__file__).resolve().parent / "previous_v2"
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


def _with_source(build: Build, text: str) -> Build:
    return dataclasses.replace(
        build, source=text, program_digest=hashlib.sha256(text.encode()).hexdigest()
    )


def previous_build(build: Build) -> Build:
    return _with_source(build, source(build))


def _load_marked(old: Build, magic: int) -> tuple[Loaded, ProgramMaps]:
    """Compile, load and fill `old` (not attached), its metadata's magic set to `magic`."""
    loaded = compile_and_load(old)
    pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
    pm.fill(old)
    raw = bytearray(pm.maps[C.MAP_META].lookup(ZERO) or b"")
    layout.U32.pack_into(raw, 0, magic & 0xFFFFFFFF)
    layout.U32.pack_into(raw, 4, magic >> 32)
    pm.maps[C.MAP_META].update(ZERO, bytes(raw))
    return loaded, pm


def _attach(loaded_pm: tuple[Loaded, ProgramMaps], iface: str, mode: str) -> int:
    loaded, pm = loaded_pm
    try:
        link = netlink.get_link(iface)
        assert link is not None, iface
        netlink.attach(link, loaded.prog_fd, mode)
        return pm.prog_id
    finally:
        loaded.close()


def load(build: Build) -> tuple[Loaded, ProgramMaps]:
    """Compile, load and fill the previous program for `build` (not attached), its metadata
    marked as the previous layout."""
    return _load_marked(previous_build(build), C.MAGIC_PREVIOUS)


def attach_previous(build: Build, iface: str, mode: str = "native") -> int:
    """What the previous release left on `iface`: its own program and maps. Call inside the
    interface's netns; returns the program id."""
    return _attach(load(build), iface, mode)


def source_v2(build: Build) -> str:
    """The layout-2 program's C text for `build`'s services (the current config header)."""
    text = (HERE_V2 / "mplex.c").read_text()
    # The parsing helpers did not change between layouts 1 and 2: one kept copy serves both.
    parts = {
        "mplex_config.h": build.header,
        "mplex_parse.h": (HERE / "mplex_parse_v1.h").read_text(),
    }
    for name in ("mplex_common.h", "mplex_core.h"):
        parts[name] = (HERE_V2 / name).read_text()
    for name, body in parts.items():
        text = text.replace(f'#include "{name}"', body.rstrip("\n"))
    return text


def build_v2(build: Build) -> Build:
    return _with_source(build, source_v2(build))


def load_v2(build: Build) -> tuple[Loaded, ProgramMaps]:
    """Compile, load and fill the layout-2 program for `build` (not attached), its metadata
    marked as layout 2 (routes in a per-CPU hash)."""
    return _load_marked(build_v2(build), C.MAGIC_HASHED)


def attach_v2(build: Build, iface: str, mode: str = "native") -> int:
    """What the release before the call-free lookup left on `iface` (call inside its netns);
    returns the program id."""
    return _attach(load_v2(build), iface, mode)
