"""Network namespaces and veth pairs for kernel tests and benchmarks, and entering them.

    with Netlab("mpxt") as net:                 # names start with mpxt-<8 hex>
        a, b = net.add_netns(net.tag + "-a"), net.add_netns(net.tag + "-b")
        net.add_veth(a, "xa", b, "xb")          # both ends up, each in its namespace
        with in_netns(b):                       # this thread now acts inside b
            ...

A Netlab deletes exactly the namespaces it made (and so their interfaces) on close, on
errors, and at interpreter exit; nothing is ever made or deleted outside them.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Self, TypeVar

from mplexctl.backend.host import CLONE_NEWNET, NETNS_RUN_DIR

T = TypeVar("T")
_libc = ctypes.CDLL(None, use_errno=True)
_LIVE: set[Netlab] = set()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread into netns `name` (as `ip netns` names it), then back."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(os.path.join(NETNS_RUN_DIR, name), os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(orig)
    finally:
        os.close(orig)


def call_in_netns(name: str, fn: Callable[[], T]) -> T:
    """fn() run by a fresh thread inside netns `name` (a socket keeps the netns it was made
    in, so sockets made this way work from any thread afterwards)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with in_netns(name):
                box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def cmd(argv: Sequence[str]) -> str:
    """Run argv; its stdout, or RuntimeError naming the command and its stderr."""
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def sh(*argv: str) -> str:
    """cmd(argv), the arguments spelled out."""
    return cmd(argv)


def ip(*args: str) -> str:
    return cmd(["ip", *args])


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def link_mac(ns: str, dev: str) -> str:
    return str(json.loads(ip("-n", ns, "-j", "link", "show", "dev", dev))[0]["address"])


def wait_until(fn: Callable[[], Any], pred: Callable[[Any], bool], timeout: float = 3.0) -> Any:
    """Poll fn() until pred(value) holds or timeout passes; return the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not pred(value) and time.monotonic() < deadline:
        time.sleep(0.01)
        value = fn()
    return value


def _operstate(ns: str, dev: str) -> str:
    return str(json.loads(ip("-n", ns, "-j", "link", "show", "dev", dev))[0].get("operstate"))


@contextmanager
def pinned() -> Iterator[None]:
    """Pin the calling thread to one CPU (keeps frames on one backlog/queue, so in order)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


class Netlab:
    """The namespaces and veth pairs of one test or benchmark, deleted on close."""

    def __init__(self, prefix: str, hex_digits: int = 8) -> None:
        self.tag = f"{prefix}-{secrets.token_hex(hex_digits // 2)}"
        self.hex = self.tag.rsplit("-", 1)[1]
        self.made: list[str] = []
        _LIVE.add(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.made.clear()
        _LIVE.discard(self)

    def add_netns(self, name: str, lo: bool = True) -> str:
        """A new netns (its loopback up unless `lo` is False), deleted on close."""
        ip("netns", "add", name)
        self.made.append(name)
        if lo:
            ip("-n", name, "link", "set", "lo", "up")
        return name

    def add_veth(
        self,
        ns: str,
        name: str,
        peer_ns: str,
        peer: str,
        *,
        mac: bytes | None = None,
        peer_mac: bytes | None = None,
        up: bool = True,
    ) -> None:
        """A veth pair, `name` in ns and `peer` in peer_ns, both up unless `up` is False
        (created inside ns, so it is never visible in the caller's namespace)."""
        assert max(len(name), len(peer)) <= 15, "interface names are at most 15 characters"
        mine = ["address", mac_text(mac)] if mac else []
        theirs = ["address", mac_text(peer_mac)] if peer_mac else []
        where = ["netns", peer_ns] if peer_ns != ns else []
        ip("-n", ns, "link", "add", name, *mine, "type", "veth", "peer", "name", peer, *theirs,
           *where)  # fmt: skip
        if up:
            ip("-n", ns, "link", "set", name, "up")
            ip("-n", peer_ns, "link", "set", peer, "up")

    def move(self, ns: str, dev: str, to: str) -> None:
        """Move dev from ns to netns `to` (and bring it up there)."""
        ip("-n", ns, "link", "set", dev, "netns", to)
        ip("-n", to, "link", "set", dev, "up")

    def address(self, ns: str, dev: str, *cidrs: str) -> None:
        for cidr in cidrs:
            ip("-n", ns, "addr", "add", cidr, "dev", dev, *(["nodad"] if ":" in cidr else []))

    def neighbour(self, ns: str, dev: str, addr: str, mac: str) -> None:
        ip("-n", ns, "neigh", "replace", addr, "lladdr", mac, "dev", dev, "nud", "permanent")

    def offloads_off(self, ns: str, dev: str, *features: str) -> None:
        """`ethtool -K dev F off ...`: e.g. tx, so that a sender's checksums are complete."""
        args = [x for f in features for x in (f, "off")]
        cmd(["ip", "netns", "exec", ns, "ethtool", "-K", dev, *args])

    def wait_up(self, ns: str, dev: str, timeout: float = 3.0) -> None:
        state = wait_until(partial(_operstate, ns, dev), lambda s: s == "UP", timeout)
        if state != "UP":
            raise RuntimeError(f"{dev} in {ns} did not come up (operstate {state})")


@atexit.register
def _cleanup_live() -> None:
    for net in list(_LIVE):
        net.close()
