"""Kernel fixtures of the apply-engine tests: a fresh netns with a veth pair per test."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@dataclass
class Host:
    """A network namespace standing for one appliance, with veth `xdp` (+ its peer `peer`)."""

    ns: str
    xdp: str
    peer: str
    tmp: Path

    def config(self, routes: dict[str, int] | None = None, **extra: Any) -> Path:
        routes = routes if routes is not None else {"600": 5001, "601": 5002, "602": 5003}
        window = extra.pop("window", (290, 294))
        more = extra.pop("more_services", "")
        head = extra.pop("head", "")
        mode = extra.pop("mode", "auto")
        hook = extra.pop("hook", "xdp")  # tc: the interface at the TC hook (no xdp_mode)
        reply = extra.pop("reply", "none")
        where = f"xdp_mode: {mode}" if hook == "xdp" else "hook: tc"
        route_text = ", ".join(f'"{k}": {v}' for k, v in routes.items())
        text = (
            f"version: 1\n{head}interfaces: [{{name: {self.xdp}, {where}}}]\n"
            "services:\n"
            "  - name: telemetry\n    protocol: udp\n    port: 5000\n"
            + (f"    reply: {reply}\n" if reply != "none" else "")
            + f"    payload_length: [{{min: {window[0]}, max: {window[1]}}}]\n"
            "    tag: {offset: 20, length: 3}\n"
            f"    routes: {{{route_text}}}\n" + more
        )
        path = self.tmp / f"cfg-{secrets.token_hex(3)}.yaml"
        path.write_text(text)
        return path

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mplexctl", *args, "--netns", self.ns],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )

    def apply(self, cfg: Path, *extra: str, ok: bool = True) -> dict[str, Any]:
        r = self.cli("apply", str(cfg), "--json", *extra)
        if ok:
            assert r.returncode == 0, r.stderr + r.stdout
        doc: dict[str, Any] = json.loads(r.stdout) if r.stdout.strip() else {}
        doc["_rc"], doc["_stderr"] = r.returncode, r.stderr
        return doc

    def status(self) -> dict[str, Any]:
        r = self.cli("status", "--json", self.xdp)
        assert r.returncode == 0, r.stderr
        rows: list[dict[str, Any]] = json.loads(r.stdout)["interfaces"]
        return rows[0]


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    with new_host(tmp_path) as h:
        yield h


@contextmanager
def new_host(tmp_path: Path) -> Iterator[Host]:
    """A fresh netns with a veth pair (both ends up inside), deleted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (BPF, XDP, network namespaces)")
    tag = secrets.token_hex(4)
    h = Host(f"mpxe-{tag}", f"mx{tag}", f"mp{tag}", tmp_path)
    sh("ip", "netns", "add", h.ns)
    try:
        sh("ip", "-n", h.ns, "link", "add", h.xdp, "type", "veth", "peer", "name", h.peer)
        sh("ip", "-n", h.ns, "link", "set", h.xdp, "up")
        sh("ip", "-n", h.ns, "link", "set", h.peer, "up")
        yield h
    finally:
        subprocess.run(["ip", "netns", "del", h.ns], capture_output=True)


@dataclass
class Wire:
    """The peer end of `host.xdp` moved into a sender netns, with test addresses."""

    host: Host
    sender_ns: str
    dst_ip: str = "192.0.2.2"
    src_ip: str = "192.0.2.1"


@pytest.fixture
def wire(host: Host) -> Iterator[Wire]:
    w = Wire(host, host.ns.replace("mpxe-", "mpxs-"))
    sh("ip", "netns", "add", w.sender_ns)
    try:
        sh("ip", "-n", host.ns, "link", "set", host.peer, "netns", w.sender_ns)
        sh("ip", "-n", host.ns, "addr", "add", f"{w.dst_ip}/24", "dev", host.xdp)
        sh("ip", "-n", w.sender_ns, "addr", "add", f"{w.src_ip}/24", "dev", host.peer)
        sh("ip", "-n", w.sender_ns, "link", "set", host.peer, "up")
        sh("ip", "netns", "exec", w.sender_ns, "ethtool", "-K", host.peer, "tx", "off")
        mac = subprocess.run(
            ["ip", "-n", host.ns, "-br", "link", "show", host.xdp],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[2]
        sh("ip", "-n", w.sender_ns, "neigh", "replace", w.dst_ip, "lladdr", mac, "dev", host.peer)
        yield w
    finally:
        subprocess.run(["ip", "netns", "del", w.sender_ns], capture_output=True)


@dataclass
class Multi:
    """One appliance netns `host.ns` with several veths `names[i]`, each the receiving end of
    a pair whose other end `peers[i]` sits in the sender netns `sender_ns`."""

    host: Host
    sender_ns: str
    names: list[str]
    peers: list[str]

    def config(self, names: list[str], modes: dict[str, str] | None = None, **extra: Any) -> Path:
        """host.config(...) serving `names` (xdp_mode auto unless `modes` says otherwise)."""
        modes = modes or {}
        items = ", ".join(f"{{name: {n}, xdp_mode: {modes.get(n, 'auto')}}}" for n in names)
        text = self.host.config(**extra).read_text()
        text = text.replace(f"[{{name: {self.host.xdp}, xdp_mode: auto}}]", f"[{items}]")
        path = self.host.tmp / f"multi-{secrets.token_hex(3)}.yaml"
        path.write_text(text)
        return path

    def status(self) -> dict[str, dict[str, Any]]:
        r = self.host.cli("status", "--json", *self.names)
        assert r.returncode == 0, r.stderr
        return {row["interface"]: row for row in json.loads(r.stdout)["interfaces"]}


@pytest.fixture
def multi(host: Host) -> Iterator[Multi]:
    """Three veth pairs (more than the plain host's), their peers in a sender netns."""
    m = Multi(host, host.ns.replace("mpxe-", "mpxs-"), [], [])
    tag = host.xdp[2:]
    sh("ip", "netns", "add", m.sender_ns)
    try:
        for i in range(3):
            name, peer = f"mx{tag}{i}", f"mp{tag}{i}"
            sh("ip", "-n", host.ns, "link", "add", name, "type", "veth", "peer", "name", peer)
            sh("ip", "-n", host.ns, "link", "set", peer, "netns", m.sender_ns)
            sh("ip", "-n", host.ns, "link", "set", name, "up")
            sh("ip", "-n", m.sender_ns, "link", "set", peer, "up")
            m.names.append(name)
            m.peers.append(peer)
        yield m
    finally:
        subprocess.run(["ip", "netns", "del", m.sender_ns], capture_output=True)
