"""Benchmark traffic tools: a C receiver, trafgen, and CPU/packet counters, on a lab of two
namespaces joined by a veth pair (tests/support/netns.py builds it; names mpxb-<hex>; only
what it created is ever deleted).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

from benchmarks.stats import run
from tests.support.frames import DST4, DST_MAC, SRC4, SRC_MAC
from tests.support.netns import Netlab, mac_text

RX_CPU, TX_CPU = "1", "0"


@dataclass
class Lab:
    tag: str
    ns_tx: str
    ns_rx: str
    dev_tx: str
    dev_rx: str
    workdir: str

    def ip(self, ns: str, *args: str) -> str:
        return run(["ip", "-n", ns, *args])

    def nsexec(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def tx_packets(self) -> int:
        doc = json.loads(self.ip(self.ns_tx, "-j", "-s", "link", "show", "dev", self.dev_tx))
        return int(doc[0]["stats64"]["tx"]["packets"])

    def snmp_udp(self) -> dict[str, int]:
        out = run(self.nsexec(self.ns_rx, "cat", "/proc/net/snmp"))
        rows = [ln.split() for ln in out.splitlines() if ln.startswith("Udp:")]
        return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)}


@contextmanager
def lab() -> Iterator[Lab]:
    """tx and rx namespaces, veth tx <-> rx with the frames' MACs and addresses."""
    with Netlab("mpxb", hex_digits=6) as net:
        h = net.tag
        lb = Lab(h, f"{h}-tx", f"{h}-rx", f"{h}-t", f"{h}-r", tempfile.mkdtemp(prefix=f"{h}-"))
        try:
            net.add_netns(lb.ns_tx)
            net.add_netns(lb.ns_rx)
            net.add_veth(lb.ns_tx, lb.dev_tx, lb.ns_rx, lb.dev_rx, mac=SRC_MAC, peer_mac=DST_MAC)
            net.address(lb.ns_tx, lb.dev_tx, f"{SRC4}/24")
            net.address(lb.ns_rx, lb.dev_rx, f"{DST4}/24")
            net.neighbour(lb.ns_tx, lb.dev_tx, DST4, mac_text(DST_MAC))
            yield lb
        finally:
            shutil.rmtree(lb.workdir, ignore_errors=True)


def build_rx(workdir: str) -> str:
    src = resources.files("benchmarks").joinpath("rx.c").read_text(encoding="utf-8")
    path = os.path.join(workdir, "rx.c")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(src)
    binary = os.path.join(workdir, "rx")
    run(["gcc", "-O2", "-o", binary, path])
    return binary


class Receiver:
    """The C receiver in the rx namespace, pinned to RX_CPU."""

    def __init__(self, lb: Lab, binary: str, spec: dict[int, str]) -> None:
        args = [f"{p}:{t}" for p, t in spec.items()]
        cmd = lb.nsexec(lb.ns_rx, "taskset", "-c", RX_CPU, binary, *args)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if "ready" not in first:
            self.stop()
            raise RuntimeError("receiver did not start")

    def sample(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        self.proc.send_signal(signal.SIGUSR1)
        return dict(json.loads(self.proc.stdout.readline()))

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return dict(json.loads(lines[-1])) if lines else {}


def trafgen_conf(workdir: str, pkts: list[bytes], name: str = "tg.cfg") -> str:
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="ascii") as fh:
        for p in pkts:
            fh.write("{ " + ", ".join(f"0x{b:02x}" for b in p) + " }\n")
    return path


def trafgen(lb: Lab, conf: str, num: int = 0, gap: str | None = None) -> subprocess.Popen[bytes]:
    cmd = ["taskset", "-c", TX_CPU, "trafgen", "--dev", lb.dev_tx, "--conf", conf,
           "--no-sock-mem", "--notouch-irq", "--cpus", "1", "--num", str(num)]  # fmt: skip
    if gap:
        cmd += ["--gap", gap]
    return subprocess.Popen(
        lb.nsexec(lb.ns_tx, *cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # trafgen forks workers: signal the whole group
    )


def stop_trafgen(tg: subprocess.Popen[bytes]) -> None:
    """SIGINT to trafgen's process group (its own session), SIGKILL if it lingers."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(tg.pid, sig)
        except ProcessLookupError:
            return
        try:
            tg.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def cpu_times() -> dict[str, int]:
    """System-wide jiffies from /proc/stat: sys, softirq, all."""
    with open("/proc/stat", encoding="ascii") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    return {"sys": f[2], "softirq": f[6], "all": sum(f[:8])}


def jiffy_ns() -> float:
    return 1e9 / os.sysconf("SC_CLK_TCK")


def wait_quiet(seconds: float) -> None:
    time.sleep(seconds)
