"""Accelerator for apply: the no-op shortcut (nothing to parse when nothing changed).

Every apply stamps the metadata of the programs it touches with two digests (Stamp): the
config file's bytes (salted with mplexctl's version and C sources) and the services and
routes it wrote. When the file's digest is the one recorded, every mplex program of the
namespace carries it, no map was edited since (the content digest of what the probe reads
still matches) and every interface of that file carries a program, the apply has nothing to
do: `unchanged` answers the live state without parsing the YAML. Otherwise it answers None
and apply takes the reference path; when that path finds nothing to do either (say only a
comment changed), `restamp` records the new file's digest so the next no-op is fast again.
"""

from __future__ import annotations

import hashlib
from functools import cache

from mplexctl import __version__, accel
from mplexctl import constants as C
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler.build import Build, ServiceEntry
from mplexctl.compiler.source import c_inputs
from mplexctl.config import load_config
from mplexctl.engine.execute import Stamp
from mplexctl.engine.probe import probe
from mplexctl.engine.state import LiveState, desired_services


@cache
def _salt() -> bytes:
    """What besides the file decides a build: mplexctl's version and its C sources."""
    texts = [*c_inputs(), __version__]
    return hashlib.sha256("\0".join(texts).encode()).digest()


def source_digest(path: str, raw: bytes | None = None) -> str | None:
    """The digest a program applied from this file (bytes `raw`, when already read) records;
    None: not applicable."""
    if not accel.enabled():
        return None
    if raw is None:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError:
            load_config(path)  # raises the ConfigError that names the file and the reason
            raise
    return hashlib.sha256(_salt() + raw).hexdigest()


def content_digest(services: tuple[ServiceEntry, ...]) -> str:
    """Digest of what the data plane does (rows + routes), independent of slots and rows."""
    h = hashlib.sha256()
    for s in services:
        h.update(repr((s.index, s.name, s.protocol, s.port, s.behaviour())).encode())
        h.update(s.routes_digest.encode())
    return h.hexdigest()


def stamp(source: str | None, build: Build) -> Stamp:
    """What this apply records in the programs it touches (nothing when not applicable)."""
    if source is None:
        return Stamp()
    return Stamp(source, content_digest(desired_services(build)))


def unchanged(source: str | None) -> LiveState | None:
    """The live state when one mplex program, applied from this very file (and mplexctl),
    runs on every interface that apply attached it to, each with its counter slot, and its
    maps still hold exactly what that apply wrote; None: not applicable (parse and plan)."""
    if source is None or source not in _recorded_sources():
        return None
    live = probe()
    programs = live.programs()
    if len(programs) != 1:
        return None
    ((prog_id, prog),) = programs.items()
    if prog.layout != C.LAYOUT_VERSION or prog.source_digest != source:
        return None
    if prog.stray_routes or not prog.rows_in_sync:
        return None
    if content_digest(prog.services) != prog.content_digest:
        return None  # drift: someone edited a map
    carriers = live.carriers(prog_id)
    indexes = {i.index for i in carriers}
    if len(indexes) != prog.n_interfaces or set(prog.if_slots) != indexes:
        return None
    # One hook each, and the reply path wherever a service restores replies.
    restores = any(s.reply == "restore" for s in prog.services)
    for i in carriers:
        if i.program is not None and i.tc_program is not None:
            return None
        egress = i.egress_program.prog_id if i.egress_program is not None else None
        if egress != (prog_id if restores else None) or (not restores and i.egress_id):
            return None
    return live


def _recorded_sources() -> set[str]:
    """The file digests the mplex programs of this namespace were applied from, read from
    their metadata alone (no route dump)."""
    out = set()
    from mplexctl.engine.probe import attached_ids  # XDP and mplex's TC programs

    for prog_id in attached_ids():
        pm = ProgramMaps.open(prog_id)
        if pm is not None:
            try:
                meta = pm.meta()
                out.add(meta.source_digest if meta else "")
            finally:
                pm.close()
    return out


def restamp(live: LiveState, build: Build, new: Stamp) -> None:
    """Record the file's digest in programs whose content is already right (no change)."""
    if not new.source:
        return
    for prog_id, prog in live.programs().items():
        if (prog.source_digest, prog.content_digest) == (new.source, new.content):
            continue
        pm = ProgramMaps.open(prog_id)
        if pm is not None:
            try:
                pm.write_meta(build, prog.seq, prog.applied_ns, new.source, new.content)
            finally:
                pm.close()
