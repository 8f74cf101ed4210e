"""Compile and load the program with BCC (Debian's python3-bpfcc). The only bcc import."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.compiler.build import Build
from mplexctl.errors import HostError, KernelError

MAP_NAMES = (
    C.MAP_ACTIVE,
    C.MAP_SERVICES,
    C.MAP_ROUTES,
    C.MAP_ROUTE_CTR,
    C.MAP_SVC_STATS,
    C.MAP_META,
    C.MAP_SVC_INFO,
    C.MAP_IFSLOT,
    C.MAP_IFSLOT_HI,
    C.MAP_FLOWS,
    C.MAP_REPLIES,
)


@dataclass
class Loaded:
    """A freshly loaded, not yet attached program and its maps (fds owned by BCC)."""

    bpf: Any
    prog_fd: int  # the XDP entry (every generation has it)
    maps: dict[str, bpfsys.Map] = field(default_factory=dict)
    fds: dict[str, int] = field(default_factory=dict)  # program name -> fd, XDP included

    def close(self) -> None:
        """Drop user-space references; an attached program keeps itself and its maps."""
        self.bpf.cleanup()


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """BCC and libbpf print diagnostics on fd 2; keep them for the error message instead."""
    import tempfile  # only a compile needs it

    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode(errors="replace").splitlines())


def _headers_present() -> bool:
    return os.path.isdir(f"/lib/modules/{os.uname().release}/build/include")


def _summary(lines: list[str], limit: int = 12) -> str:
    keep = [ln for ln in lines if "error" in ln.lower() or "invalid" in ln.lower()]
    return "\n  ".join((keep or lines)[-limit:])


def _declared(bpf: Any, name: str) -> bool:
    """Whether the program declares map `name` (a previous release's program lacks some)."""
    try:
        bpf.get_table(name.encode())
    except KeyError:
        return False
    return True


def compile_and_load(build: Build) -> Loaded:
    """Run the BPF compiler on build.source and load the program (verifier included)."""
    if not _headers_present():
        raise HostError(
            f"kernel headers for BCC are missing (/lib/modules/{os.uname().release}/build): "
            "run `make setup` (falls back to Debian's generic headers)"
        )
    try:
        from bcc import BPF
    except ImportError:
        raise HostError("python3-bpfcc is not installed (apt-get install python3-bpfcc)") from None
    with _captured_stderr() as log:
        try:
            bpf = BPF(text=build.source.encode(), cflags=["-Wno-unused-function"])
        except Exception:
            bpf = None
    if bpf is None:
        raise KernelError(f"BPF compile failed:\n  {_summary(log)}")
    fds: dict[str, int] = {}
    for prog in build.programs:
        kind = BPF.XDP if prog == C.PROG_NAME else BPF.SCHED_CLS
        with _captured_stderr() as log:
            try:
                fds[prog] = bpf.load_func(prog.encode(), kind).fd
            except Exception as exc:
                bpf.cleanup()
                raise KernelError(
                    f"the verifier rejected {prog} ({exc}):\n  {_summary(log)}"
                ) from None
    loaded = Loaded(bpf=bpf, prog_fd=fds[C.PROG_NAME], fds=fds)
    for name in MAP_NAMES:
        if _declared(bpf, name):
            fd = bpf.get_table(name.encode()).get_fd()
            loaded.maps[name] = bpfsys.Map(fd, owned=False)
    # Every entry holds every map (those its code does not use are bound): any program of a
    # generation leads a later process to all of its maps, and the maps live as long as one
    # of its programs is attached.
    for fd in fds.values():
        for m in loaded.maps.values():
            bpfsys.prog_bind_map(fd, m.fd)
    return loaded
