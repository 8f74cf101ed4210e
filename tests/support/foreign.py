"""Someone else's XDP program: a trivial XDP_PASS program that mplex did not make, attached
with BCC from a separate process inside the test's namespace (the program outlives it)."""

from __future__ import annotations

import subprocess
import sys

# BCC's attach_xdp flags: XDP_FLAGS_SKB_MODE (generic) and XDP_FLAGS_DRV_MODE (native).
MODE_FLAGS = {"generic": 1 << 1, "native": 1 << 2}

_CODE = """
import sys
from bcc import BPF
b = BPF(text="int other_xdp(struct xdp_md *ctx) { return XDP_PASS; }")
b.attach_xdp(sys.argv[1], b.load_func("other_xdp", BPF.XDP), int(sys.argv[2]))
"""


def attach_foreign(ns: str, iface: str, mode: str = "native", python: str = sys.executable) -> None:
    """Attach the foreign program to iface in ns (`python`: an interpreter that has bcc)."""
    subprocess.run(
        ["ip", "netns", "exec", ns, python, "-c", _CODE, iface, str(MODE_FLAGS[mode])],
        check=True,
        capture_output=True,
        text=True,
    )
