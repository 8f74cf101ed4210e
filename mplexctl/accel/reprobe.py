"""Accelerator for verification: confirm an apply's in-place route writes without decoding.

After an apply, the verifying re-probe reads every route entry again. When the plan only
wrote route ports in place (no entry added or removed, no table or program swap), and the
map now holds exactly the entries of the probe before the apply, in the same order, with
exactly the planned ports written, the routes decode to the desired tables: the re-probe
takes them from the build instead of decoding every entry. Anything else -- an entry more or
less, another port anywhere, another program -- answers None, and the probe decodes the map
and the planner compares as usual (tests/accel/test_reprobe.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mplexctl import accel
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build, ServiceEntry
from mplexctl.config.model import Routes
from mplexctl.engine.state import (
    LiveState,
    ProgramState,
    RouteImage,
    desired_services,
)

if TYPE_CHECKING:
    from mplexctl.backend.program import RouteDump
    from mplexctl.engine.plan import Plan


@dataclass(frozen=True)
class RouteWrites:
    """Route ports an apply wrote in place into one program, and the state they were
    planned from."""

    before: ProgramState  # as probed before the apply, with its route image
    desired: tuple[ServiceEntry, ...]
    writes: dict[bytes, int]  # full route key -> port written


def expected(p: Plan, live: LiveState, build: Build) -> dict[int, RouteWrites]:
    """Per program, the route ports p writes in place (when that is all it does to the
    routes); {}: not applicable."""
    if not accel.enabled():
        return {}
    pp = p.program
    if pp is None or pp.new or pp.cleanup:
        return {}
    prog = live.programs().get(pp.prog_id)
    if prog is None:
        return {}
    writes: dict[bytes, int] = {}
    for op in pp.service_ops:
        if op.kind == "table" or (op.kind == "route" and op.tags[0] not in op.service.routes):
            return {}  # entries added or removed: decode the re-probe
        if op.kind == "route":
            key = layout.route_key(op.index, prog.route_slot[op.index], op.tags[0])
            writes[key] = op.service.routes[op.tags[0]]
    return {prog.prog_id: RouteWrites(prog, desired_services(build), writes)}


def confirmed(
    writes: RouteWrites | None,
    prog_id: int,
    dump: RouteDump,
    names: list[str],
    slots: list[int],
) -> tuple[Routes, ...] | None:
    """The routes of each service (by index) when the dump holds exactly what the apply
    planned; None: not applicable (decode the dump)."""
    if not accel.enabled() or writes is None:
        return None
    image = writes.before.image
    if writes.before.prog_id != prog_id or image is None:
        return None
    if [s.name for s in writes.desired] != names or [
        s.name for s in writes.before.services
    ] != names:
        return None
    if tuple(slots) != writes.before.route_slot or dump.keys != image.keys:
        return None
    if patched(image, writes.writes) != dump.ports_raw:
        return None
    return tuple(s.routes for s in writes.desired)


def patched(image: RouteImage, writes: dict[bytes, int]) -> bytes | None:
    """The image's ports after writing `writes` (full key -> port) in place; None when a key
    is not in the image (an added route: the image cannot say)."""
    out = bytearray(image.ports)
    for key, port in writes.items():
        at = image.keys.find(key)
        while at >= 0 and at % image.key_size:
            at = image.keys.find(key, at + 1)
        if at < 0:
            return None
        i = at // image.key_size
        out[2 * i : 2 * i + 2] = port.to_bytes(2, "big")
    return bytes(out)
