"""Accelerator for apply: parse the file in one thread while another probes the kernel.

The route-map dump is a syscall that releases the GIL, so loading and validating a large
file and probing overlap. Nothing is touched before both are done; an error in either is
raised as it would be one after the other (backend/host.py: in_background)."""

from __future__ import annotations

from mplexctl import accel
from mplexctl.backend.host import in_background
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import load_config
from mplexctl.engine.probe import probe
from mplexctl.engine.state import LiveState


def load_and_probe(path: str) -> tuple[Build, LiveState] | None:
    """The desired build and the live state; None: not applicable (one after the other)."""
    if not accel.enabled():
        return None
    with in_background(probe) as live_later:
        build = compile_config(load_config(path))  # nothing touched yet
    return build, live_later.result()
