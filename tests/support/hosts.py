"""Appliances for the apply-engine and role tests: a network namespace with the XDP end of
a veth pair, driven through the `mplexctl` CLI, and optionally a sender namespace on the
wire. Built with tests/support/netns.py; every namespace made here is deleted afterwards.

    host    one netns `ns` with veth `xdp` and its peer `peer`, both inside
    wire    the peer moved to a sender netns, addresses on both ends (UDP can flow)
    multi   three more veth pairs, their peers in a sender netns
    sites   the role tests' inventory hosts: each a host with its wire
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mplexctl.backend import bpfsys
from mplexctl.constants import XDP_PASS
from tests.support.foreign import attach_foreign
from tests.support.frames import DST4, SRC4, ports, tagged_udp
from tests.support.netns import Netlab, ip, link_mac
from tests.support.traffic import routed_ports

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Host:
    """A network namespace standing for one appliance, with veth `xdp` (+ its peer `peer`)."""

    ns: str
    xdp: str
    peer: str
    tmp: Path
    net: Netlab = field(repr=False)

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


@contextmanager
def host(tmp: Path) -> Iterator[Host]:
    """A fresh appliance namespace with one veth pair inside (names mpxe-/mx/mp + 8 hex)."""
    if os.geteuid() != 0:
        raise AssertionError("kernel tests need root (BPF, XDP, network namespaces)")
    with Netlab("mpxe") as net:
        h = Host(net.add_netns(net.tag), f"mx{net.hex}", f"mp{net.hex}", tmp, net)
        net.add_veth(h.ns, h.xdp, h.ns, h.peer)
        yield h


@dataclass
class Wire:
    """The peer end of `host.xdp` moved into a sender netns, with test addresses."""

    host: Host
    sender_ns: str
    dst_ip: str = DST4
    src_ip: str = SRC4


def wire(h: Host) -> Wire:
    """Move h.peer to a new sender netns (deleted with h), address both ends, and switch the
    sender's tx checksum offload off (so its datagrams carry full checksums)."""
    w = Wire(h, h.net.add_netns(h.ns.replace("mpxe-", "mpxs-")))
    connect(h.net, h.ns, h.xdp, w.sender_ns, h.peer)
    h.net.offloads_off(w.sender_ns, h.peer, "tx")
    return w


def connect(net: Netlab, ns: str, dev: str, sender_ns: str, peer: str) -> None:
    """peer (now in ns) moved to sender_ns; DST4 on dev, SRC4 on peer, and the sender's
    neighbour entry for DST4."""
    net.move(ns, peer, sender_ns)
    net.address(ns, dev, f"{DST4}/24")
    net.address(sender_ns, peer, f"{SRC4}/24")
    net.neighbour(sender_ns, peer, DST4, link_mac(ns, dev))


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


def multi(h: Host, count: int = 3) -> Multi:
    """`count` more veth pairs in h.ns, their peers in a new sender netns (deleted with h)."""
    m = Multi(h, h.net.add_netns(h.ns.replace("mpxe-", "mpxs-")), [], [])
    for i in range(count):
        name, peer = f"mx{h.net.hex}{i}", f"mp{h.net.hex}{i}"
        h.net.add_veth(h.ns, name, m.sender_ns, peer)
        m.names.append(name)
        m.peers.append(peer)
    return m


def route_of(prog_id: int, tag: bytes, length: int = 292) -> int | None:
    """Destination port the attached program gives a datagram with `tag` (None: dropped),
    asked with BPF_PROG_TEST_RUN."""
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        run = bpfsys.prog_test_run(fd, tagged_udp(tag, length=length))
    finally:
        os.close(fd)
    if run.retval != XDP_PASS:
        return None
    return ports(run.data)[1]


@dataclass
class Site:
    """One inventory host of the role tests: its namespace with the XDP end of a veth pair,
    and a sender namespace with the peer."""

    index: int
    netns: str
    sender: str
    ifname: str
    peer: str

    def xdp_prog(self) -> tuple[int, str]:
        """(id, name) of the XDP program on the interface; (0, "") when there is none."""
        link = json.loads(ip("-j", "-d", "-n", self.netns, "link", "show", self.ifname))[0]
        prog = (link.get("xdp") or {}).get("prog") or {}
        return int(prog.get("id", 0)), str(prog.get("name", ""))

    def route_of(self, tags: list[str], ports: list[int]) -> dict[str, int]:
        """Send one UDP datagram to port 5000 per tag; the port each one arrived on (0: none)."""
        return routed_ports(self.netns, self.sender, DST4, tags, ports)

    def attach_foreign(self, python: str = sys.executable) -> None:
        """Attach a trivial XDP_PASS program that mplex did not make (generic mode)."""
        attach_foreign(self.netns, self.ifname, "generic", python)


@contextmanager
def sites(count: int) -> Iterator[list[Site]]:
    """`count` sites (names mpxa-<6 hex>-h0, -s0, -x0, -p0, ...), deleted afterwards."""
    with Netlab("mpxa", hex_digits=6) as net:
        out = []
        for i in range(count):
            site = Site(
                i, f"{net.tag}-h{i}", f"{net.tag}-s{i}", f"{net.tag}-x{i}", f"{net.tag}-p{i}"
            )
            net.add_netns(site.netns)
            net.add_netns(site.sender)
            net.add_veth(site.netns, site.ifname, site.netns, site.peer)
            connect(net, site.netns, site.ifname, site.sender, site.peer)
            out.append(site)
        yield out
