"""Two namespaces joined by a veth pair, a C receiver, trafgen, and CPU/packet counters.

Every name starts with mpxb-<hex>; only what this module created is ever deleted.
"""

from __future__ import annotations

import json
import os
import secrets
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

from benchmarks import frames
from benchmarks.stats import run

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
    h = secrets.token_hex(3)
    lb = Lab(h, f"mpxb-{h}-tx", f"mpxb-{h}-rx", f"mpxb-{h}-t", f"mpxb-{h}-r", "")
    lb.workdir = tempfile.mkdtemp(prefix=f"mpxb-{h}-")
    made: list[str] = []
    try:
        for ns in (lb.ns_tx, lb.ns_rx):
            run(["ip", "netns", "add", ns])
            made.append(ns)
        run(["ip", "link", "add", lb.dev_tx, "netns", lb.ns_tx, "type", "veth",
             "peer", "name", lb.dev_rx, "netns", lb.ns_rx])  # fmt: skip
        for ns, dev, mac, addr in (
            (lb.ns_tx, lb.dev_tx, frames.SRC_MAC, "10.77.0.1/24"),
            (lb.ns_rx, lb.dev_rx, frames.DST_MAC, "10.77.0.2/24"),
        ):
            lb.ip(ns, "link", "set", "dev", dev, "address", mac.hex(":"))
            lb.ip(ns, "addr", "add", addr, "dev", dev)
            lb.ip(ns, "link", "set", "dev", dev, "up")
            lb.ip(ns, "link", "set", "dev", "lo", "up")
        yield lb
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
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
