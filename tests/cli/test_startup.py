"""The apply/diff/status path starts without the heavy imports it does not need: pyroute2
only for a change of attachment, jsonschema only to validate, bcc only to compile, scapy
only to read a capture. Start-up time is most of a no-op apply's budget (BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

CODE = """
import sys
import mplexctl.cli.main, mplexctl.engine.apply, mplexctl.engine.probe, mplexctl.engine.status
import mplexctl.config, mplexctl.compiler.build, mplexctl.cli.prove, mplexctl.engine.execute
heavy = sorted(m for m in ("pyroute2", "jsonschema", "bcc", "scapy") if m in sys.modules)
print(",".join(heavy))
"""


def test_heavy_modules_are_imported_lazily() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
