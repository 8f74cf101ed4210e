"""A small lab for the role's test: per inventory host, a network namespace with the XDP side of
a veth pair, and a sender namespace with the peer. Traffic stays inside the namespaces made here.

Sockets are opened inside a namespace by a short-lived thread that setns(2)es itself there
(a socket keeps the namespace it was created in), so no helper processes are needed.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

CLONE_NEWNET = 0x40000000
HOST_ADDR = "192.0.2.2"  # TEST-NET-1: the XDP side, in every host namespace
SENDER_ADDR = "192.0.2.1"
PREFIX = "mpxa-"

T = TypeVar("T")


def ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run fn in a fresh thread that has entered the named network namespace."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {name}")
            finally:
                os.close(fd)
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@dataclass
class Site:
    """One inventory host: its namespace, its XDP interface and its sender namespace."""

    index: int
    netns: str
    sender: str
    ifname: str
    peer: str

    def create(self) -> None:
        ip("netns", "add", self.netns)
        ip("netns", "add", self.sender)
        ip("-n", self.netns, "link", "add", self.ifname, "type", "veth", "peer", "name",
           self.peer, "netns", self.sender)  # fmt: skip
        ip("-n", self.netns, "addr", "add", f"{HOST_ADDR}/24", "dev", self.ifname)
        ip("-n", self.sender, "addr", "add", f"{SENDER_ADDR}/24", "dev", self.peer)
        for ns, dev in ((self.netns, self.ifname), (self.sender, self.peer), (self.netns, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        mac = ip("-n", self.netns, "-br", "link", "show", self.ifname).split()[2]
        ip("-n", self.sender, "neigh", "replace", HOST_ADDR, "lladdr", mac, "dev", self.peer)

    def delete(self) -> None:
        for ns in (self.netns, self.sender):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def xdp_prog(self) -> tuple[int, str]:
        """(id, name) of the XDP program on the interface; (0, "") when there is none."""
        link = json.loads(ip("-j", "-d", "-n", self.netns, "link", "show", self.ifname))[0]
        prog = (link.get("xdp") or {}).get("prog") or {}
        return int(prog.get("id", 0)), str(prog.get("name", ""))

    def route_of(self, tags: list[str], ports: list[int], length: int = 292) -> dict[str, int]:
        """Send one UDP datagram to port 5000 per tag; the port each one arrived on (0: none)."""
        listen = sorted({5000, *ports})

        def receivers() -> dict[socket.socket, int]:
            socks = {}
            for port in listen:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((HOST_ADDR, port))
                socks[s] = port
            return socks

        def sender() -> socket.socket:
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        socks = in_netns(self.netns, receivers)
        out = in_netns(self.sender, sender)
        got = {tag: 0 for tag in tags}
        try:
            for tag in tags:
                payload = bytearray(b"x" * length)
                payload[20 : 20 + len(tag)] = tag.encode()
                out.sendto(bytes(payload), (HOST_ADDR, 5000))
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and not all(got.values()):
                for s in select.select(list(socks), [], [], 0.1)[0]:
                    data = s.recv(4096)
                    tag = data[20:23].decode(errors="replace")
                    if tag in got:
                        got[tag] = socks[s]
        finally:
            out.close()
            for s in socks:
                s.close()
        return got

    def attach_foreign(self, python: str = sys.executable) -> None:
        """Attach a trivial XDP_PASS program that mplex did not make (BCC, generic mode)."""
        code = (
            "import sys\n"
            "from bcc import BPF\n"
            "b = BPF(text='int foreign(struct xdp_md *ctx) { return XDP_PASS; }')\n"
            "b.attach_xdp(sys.argv[1], b.load_func('foreign', BPF.XDP), BPF.XDP_FLAGS_SKB_MODE)\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.netns, python, "-c", code, self.ifname],
            capture_output=True,
            text=True,
            check=True,
        )


@dataclass
class Lab:
    sites: list[Site] = field(default_factory=list)

    @classmethod
    def create(cls, count: int) -> Lab:
        run = secrets.token_hex(3)
        lab = cls()
        try:
            for i in range(count):
                site = Site(
                    index=i,
                    netns=f"{PREFIX}{run}-h{i}",
                    sender=f"{PREFIX}{run}-s{i}",
                    ifname=f"{PREFIX}{run}-x{i}",
                    peer=f"{PREFIX}{run}-p{i}",
                )
                lab.sites.append(site)
                site.create()
        except BaseException:
            lab.delete()
            raise
        return lab

    def delete(self) -> None:
        for site in self.sites:
            site.delete()
