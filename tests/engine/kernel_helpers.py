"""Helpers of the apply-engine kernel tests: observe routing of an attached program."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

from mplexctl.backend import bpfsys
from mplexctl.constants import XDP_PASS


def udp_frame(tag: bytes, dport: int = 5000, length: int = 292) -> bytes:
    payload = bytearray(b"x" * length)
    payload[20 : 20 + len(tag)] = tag
    udp = struct.pack("!HHHH", 40000, dport, 8 + length, 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        bytes([192, 0, 2, 1]),
        bytes([192, 0, 2, 2]),
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + udp


def route_of(prog_id: int, tag: bytes, length: int = 292) -> int | None:
    """Destination port the attached program gives a datagram with `tag` (None: dropped)."""
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        run = bpfsys.prog_test_run(fd, udp_frame(tag, length=length))
    finally:
        os.close(fd)
    if run.retval != XDP_PASS:
        return None
    return int.from_bytes(run.data[36:38], "big")


FOREIGN = textwrap.dedent(
    """
    from bcc import BPF
    from pyroute2 import IPRoute
    b = BPF(text="int other_xdp(struct xdp_md *ctx) { return XDP_PASS; }")
    fn = b.load_func("other_xdp", BPF.XDP)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=IFACE)[0]
        ipr.link("set", index=idx, xdp={"attrs": [("IFLA_XDP_FD", fn.fd),
                                                   ("IFLA_XDP_FLAGS", 1 << 2)]})
    """
)


def attach_foreign(ns: str, iface: str) -> None:
    """Attach someone else's trivial XDP program (native mode) to iface in ns."""
    code = f"IFACE = {iface!r}\n" + FOREIGN
    subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code], check=True, capture_output=True
    )
