"""The receiving-side configurations compared end to end: none, XDP_PASS, mplex, nftables."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from benchmarks import configs, netlab
from benchmarks.control import cli
from benchmarks.stats import run
from tests.support.frames import payload, udp_frame

NFT_TABLE = "mpxb"


@dataclass(frozen=True)
class Setup:
    name: str
    kind: str  # none | pass | tcpass | mplex | nft
    mode: str = ""  # native | generic for XDP; tc | tc-clsact for mplex; tcx | clsact for tcpass

    @property
    def direct(self) -> bool:
        """Frames go straight to the backend ports (no router on the receiving side)."""
        return self.kind in ("none", "pass", "tcpass")


# The TC floor: a trivial program at the TC ingress hook (tcx, or a clsact cls_bpf filter),
# attached (and later detached) by a short process inside the receiving netns; the
# attachment outlives it.
TC_PASS = """
import socket, sys
from bcc import BPF
from mplexctl.backend import bpfsys, tchook
dev, up, via = sys.argv[1], sys.argv[2] == "up", sys.argv[3]
index = socket.if_nametoindex(dev)
if up:
    b = BPF(text="int tc_pass(struct __sk_buff *skb) { return -1; }")
    tchook.attach(index, dev, via, b.load_func("tc_pass", BPF.SCHED_CLS).fd, "ingress")
else:
    for found in tchook.query(index, "ingress"):
        fd = bpfsys.prog_fd_by_id(found.prog_id)
        if bpfsys.prog_info(fd).name == "tc_pass":
            tchook.detach(index, dev, found.via, fd, "ingress")
"""
TC_ATTACH = {"tc": "tcx", "tc-clsact": "clsact"}  # Setup.mode of mplex at TC -> how attached


def nft_rules(dev: str) -> str:
    lo, hi = 290 + 8, 294 + 8  # `udp length` includes the 8-byte header
    vmap = ", ".join(f"0x{t.hex()} : {p}" for t, p in configs.BACKENDS.items())
    port = configs.SERVICE_PORT
    return f"""table netdev {NFT_TABLE} {{
  chain ingress {{
    type filter hook ingress device "{dev}" priority -500; policy accept;
    udp dport {port} udp length != {lo}-{hi} drop
    udp dport {port} udp dport set @ih,160,24 map {{ {vmap} }} accept
    udp dport {port} drop
  }}
}}
"""


class Switcher:
    """Puts one Setup in place on the receiving veth and takes it away again."""

    def __init__(self, lb: netlab.Lab) -> None:
        from bcc import BPF

        from benchmarks.testrun import PASS_SRC

        self.lb = lb
        self.bpf: Any = BPF(text=PASS_SRC)
        fd = self.bpf.load_func("xdp_pass", BPF.XDP).fd
        # `ip -n` remounts /sys, so the pin lives on a private bpffs under the work dir.
        self.fs = os.path.join(lb.workdir, "bpffs")
        os.makedirs(self.fs)
        run(["mount", "-t", "bpf", "bpf", self.fs])
        self.pin = os.path.join(self.fs, "pass")
        from mplexctl.backend import bpfsys

        bpfsys.obj_pin(fd, self.pin)
        self.cfg: dict[str, str] = {}
        for mode in ("native", "generic", "tc"):
            path = os.path.join(lb.workdir, f"mplex-{mode}.yaml")
            text = configs.config_text(lb.dev_rx, 3, mode="auto" if mode == "tc" else mode)
            if mode == "tc":
                text = text.replace("    xdp_mode: auto", "    hook: tc")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            self.cfg[mode] = path
        self.nft = os.path.join(lb.workdir, "rules.nft")
        with open(self.nft, "w", encoding="utf-8") as fh:
            fh.write(nft_rules(lb.dev_rx))

    def close(self) -> None:
        try:
            os.unlink(self.pin)
        finally:
            subprocess.run(["umount", self.fs], capture_output=True, timeout=30)
            self.bpf.cleanup()

    def up(self, s: Setup) -> None:
        lb = self.lb
        if s.kind == "pass":
            flag = "xdpdrv" if s.mode == "native" else "xdpgeneric"
            lb.ip(lb.ns_rx, "link", "set", "dev", lb.dev_rx, flag, "pinned", self.pin)
        elif s.kind == "tcpass":
            run(lb.nsexec(lb.ns_rx, sys.executable, "-c", TC_PASS, lb.dev_rx, "up", s.mode))
        elif s.kind == "mplex" and s.mode in TC_ATTACH:
            from mplexctl.backend import tchook

            os.environ[tchook.ENV] = TC_ATTACH[s.mode]
            try:
                cli("apply", "--netns", lb.ns_rx, self.cfg["tc"])
            finally:
                del os.environ[tchook.ENV]
        elif s.kind == "mplex":
            cli("apply", "--netns", lb.ns_rx, self.cfg[s.mode])
        elif s.kind == "nft":
            run(lb.nsexec(lb.ns_rx, "nft", "-f", self.nft))

    def down(self, s: Setup) -> None:
        lb = self.lb
        if s.kind == "pass":
            flag = "xdpdrv" if s.mode == "native" else "xdpgeneric"
            lb.ip(lb.ns_rx, "link", "set", "dev", lb.dev_rx, flag, "off")
        elif s.kind == "tcpass":
            run(lb.nsexec(lb.ns_rx, sys.executable, "-c", TC_PASS, lb.dev_rx, "down", s.mode))
        elif s.kind == "mplex":
            cli("detach", "--netns", lb.ns_rx)
        elif s.kind == "nft":
            run(lb.nsexec(lb.ns_rx, "nft", "delete", "table", "netdev", NFT_TABLE))


def valid_frames(direct: bool) -> list[bytes]:
    out = []
    for tag, port in configs.BACKENDS.items():
        dport = port if direct else configs.SERVICE_PORT
        out.append(udp_frame(payload(tag), dport))
    return out


def flood_frames(direct: bool) -> list[bytes]:
    """20 frames: 2 valid (10 %), 9 with a bad length, 9 with an unknown tag."""
    valid = valid_frames(direct)[:2]
    port = configs.SERVICE_PORT
    bad_len = udp_frame(payload(b"600", configs.BAD_LEN), port)
    unknown = udp_frame(payload(configs.UNKNOWN_TAG), port)
    out: list[bytes] = []
    for i in range(2):
        out.append(valid[i])
        out += [bad_len, unknown] * 4 + [bad_len if i == 0 else unknown]
    return out


RX_SPEC = {configs.SERVICE_PORT: "*", **{p: t.decode() for t, p in configs.BACKENDS.items()}}
