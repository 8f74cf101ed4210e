"""A two-host lab for kernel tests: a sender netns and an appliance netns joined by a veth pair.

    with Lab() as lab:                      # netns lab.src, lab.dst; veth lab.src_if, lab.dst_if
        with lab.in_netns(lab.dst):         # pyroute2 / sockets now act inside the appliance
            ...
        rx = lab.udp_receiver([5001])       # dual-stack UDP sockets bound in lab.dst
        cap = lab.capture()                 # AF_PACKET ETH_P_ALL on lab.dst_if (after XDP)
        lab.send_frames([lab.udp_frame(b"x" * 292, 5000)])   # AF_PACKET out of lab.src_if

Addresses (192.0.2.0/24, 2001:db8::/64) and static neighbours exist only inside the two
namespaces. Offloads are off by default (`ethtool -K tx off rx off gro off` on both ends), so
socket-sent packets carry full checksums and the receiver really verifies them. Every name is
"<prefix>-<8 hex>..." and everything is deleted on exit, including on errors and Ctrl-C.
Close sockets you open inside a lab netns yourself: an open socket keeps a deleted netns alive.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import secrets
import selectors
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import Any, Self, TypeVar

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
TCP, UDP = 6, 17
TCP_SYN = 0x02

SRC_MAC = bytes.fromhex("020000000002")
DST_MAC = bytes.fromhex("020000000001")
SRC4, DST4 = "192.0.2.1", "192.0.2.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"

_libc = ctypes.CDLL(None, use_errno=True)
_LIVE: set[Lab] = set()
_STOP = object()


# --- network namespaces ---------------------------------------------------------------------
def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Move the calling thread into netns `name` (as `ip netns` names it), then back."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{name}", os.O_RDONLY)
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


def _ip(*args: str) -> None:
    _cmd(["ip", *args])


def _cmd(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res


# --- frames ---------------------------------------------------------------------------------
def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@dataclass(frozen=True)
class L4View:
    """Where the parts of an untagged IPv4/IPv6 UDP/TCP frame are (no options, no ext headers
    for IPv6; IPv4 options are allowed)."""

    version: int
    proto: int
    l3: int
    l4: int
    end: int  # end of the IP packet
    src_ip: bytes
    dst_ip: bytes

    @property
    def csum_off(self) -> int:
        return self.l4 + (6 if self.proto == UDP else 16)


def parse_l4(frame: bytes) -> L4View | None:
    """The L4 layout of an IPv4/IPv6 UDP/TCP frame, or None for anything else."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == ETH_P_IPV4 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        total = int.from_bytes(frame[16:18], "big")
        view = L4View(4, frame[23], 14, 14 + ihl, 14 + total, frame[26:30], frame[30:34])
    elif ethertype == ETH_P_IPV6 and len(frame) >= 54:
        plen = int.from_bytes(frame[18:20], "big")
        view = L4View(6, frame[20], 14, 54, 54 + plen, frame[22:38], frame[38:54])
    else:
        return None
    if view.proto not in (TCP, UDP) or view.end > len(frame):
        return None
    return view


def _pseudo(view: L4View, l4_len: int) -> bytes:
    if view.version == 4:
        return view.src_ip + view.dst_ip + struct.pack("!BBH", 0, view.proto, l4_len)
    return view.src_ip + view.dst_ip + struct.pack("!I3xB", l4_len, view.proto)


def compute_l4_checksum(frame: bytes) -> int:
    """Full recomputation of the UDP/TCP checksum of frame (the field itself taken as 0)."""
    view = parse_l4(frame)
    assert view is not None, "not an IPv4/IPv6 UDP/TCP frame"
    at = view.csum_off
    seg = frame[view.l4 : at] + b"\0\0" + frame[at + 2 : view.end]
    csum = ~ones_sum(_pseudo(view, view.end - view.l4) + seg) & 0xFFFF
    return 0xFFFF if view.proto == UDP and csum == 0 else csum


def l4_checksum_ok(frame: bytes) -> bool:
    """True when the L4 checksum is right (an IPv4 UDP checksum of 0 means "none")."""
    view = parse_l4(frame)
    if view is None:
        return False
    field = int.from_bytes(frame[view.csum_off : view.csum_off + 2], "big")
    if view.version == 4 and view.proto == UDP and field == 0:
        return True
    return field == compute_l4_checksum(frame)


def ports(frame: bytes) -> tuple[int, int]:
    view = parse_l4(frame)
    assert view is not None
    sport, dport = struct.unpack_from("!HH", frame, view.l4)
    return sport, dport


def with_dport(frame: bytes, port: int) -> bytes:
    """frame with its destination port replaced and its L4 checksum fully recomputed (an
    IPv4 UDP checksum of 0 stays 0)."""
    view = parse_l4(frame)
    assert view is not None
    out = bytearray(frame)
    out[view.l4 + 2 : view.l4 + 4] = port.to_bytes(2, "big")
    at = view.csum_off
    if not (view.version == 4 and view.proto == UDP and frame[at : at + 2] == b"\0\0"):
        out[at : at + 2] = compute_l4_checksum(bytes(out)).to_bytes(2, "big")
    return bytes(out)


def build_frame(
    version: int,
    proto: int,
    payload: bytes,
    dport: int,
    *,
    sport: int = 40000,
    zero_csum: bool = False,
    tcp_flags: int = TCP_SYN,
    src_mac: bytes = SRC_MAC,
    dst_mac: bytes = DST_MAC,
) -> bytes:
    """An Ethernet frame from the lab's src to its dst with correct lengths and checksums."""
    if proto == UDP:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 65535, 0, 0)
        l4 += payload
    if version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
            socket.inet_pton(socket.AF_INET, SRC4), socket.inet_pton(socket.AF_INET, DST4),
        )  # fmt: skip
        ip = ip[:10] + (~ones_sum(ip) & 0xFFFF).to_bytes(2, "big") + ip[12:]
        ethertype = ETH_P_IPV4
    else:
        ip = struct.pack(
            "!IHBB16s16s", 0x60000000, len(l4), proto, 64,
            socket.inet_pton(socket.AF_INET6, SRC6), socket.inet_pton(socket.AF_INET6, DST6),
        )  # fmt: skip
        ethertype = ETH_P_IPV6
    frame = dst_mac + src_mac + ethertype.to_bytes(2, "big") + ip + l4
    if proto == UDP and zero_csum:
        return frame
    view = parse_l4(frame)
    assert view is not None
    csum = compute_l4_checksum(frame).to_bytes(2, "big")
    return frame[: view.csum_off] + csum + frame[view.csum_off + 2 :]


# --- sockets collected by a thread ----------------------------------------------------------
class _Collector:
    """Reads a set of sockets in a background thread until stopped; records what arrives."""

    def __init__(self, socks: Sequence[tuple[socket.socket, Any]]) -> None:
        self._socks = list(socks)
        self._cond = threading.Condition()
        self._items: list[Any] = []
        self._rfd, self._wfd = os.pipe()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._running = True
        self._thread.start()

    def _read(self, sock: socket.socket, key: Any) -> Any:
        raise NotImplementedError

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._rfd, selectors.EVENT_READ, _STOP)
        for sock, key in self._socks:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, key)
        try:
            while True:
                for sk, _ in sel.select():
                    if sk.data is _STOP:  # told to stop: take what is queued, then leave
                        for sock, key in self._socks:
                            self._drain(sock, key)
                        return
                    self._drain(sk.fileobj, sk.data)  # type: ignore[arg-type]
        finally:
            sel.close()

    def _drain(self, sock: socket.socket, key: Any) -> None:
        while True:
            try:
                item = self._read(sock, key)
            except BlockingIOError:
                return
            with self._cond:
                self._items.append(item)
                self._cond.notify_all()

    @property
    def items(self) -> list[Any]:
        with self._cond:
            return list(self._items)

    def wait(self, pred: Callable[[list[Any]], bool], timeout: float = 3.0) -> bool:
        """Wait until pred(items) holds; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: pred(self._items), timeout)

    def wait_count(self, n: int, timeout: float = 3.0) -> bool:
        return self.wait(lambda items: len(items) >= n, timeout)

    def stop(self) -> None:
        """Stop the thread (it drains whatever is already queued first) and close sockets."""
        if not self._running:
            return
        self._running = False
        os.write(self._wfd, b"x")
        self._thread.join(5)
        for sock, _ in self._socks:
            sock.close()
        os.close(self._rfd)
        os.close(self._wfd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


C = TypeVar("C", bound=_Collector)


@dataclass(frozen=True)
class Datagram:
    port: int  # the local port it arrived on
    payload: bytes
    peer: tuple[Any, ...]


class UdpReceiver(_Collector):
    """Dual-stack UDP sockets bound on ports in the dst netns; .items is a list of Datagram."""

    def _read(self, sock: socket.socket, key: Any) -> Datagram:
        data, peer = sock.recvfrom(65535)
        return Datagram(int(key), data, peer)

    def payloads(self, port: int) -> list[bytes]:
        return [d.payload for d in self.items if d.port == port]


@dataclass(frozen=True)
class Captured:
    frame: bytes
    pkttype: int  # PACKET_HOST (0) ... PACKET_OUTGOING (4)

    @property
    def incoming(self) -> bool:
        return self.pkttype != PACKET_OUTGOING


class Capture(_Collector):
    """An AF_PACKET ETH_P_ALL socket on one interface; .items is a list of Captured."""

    def _read(self, sock: socket.socket, key: Any) -> Captured:
        data, addr = sock.recvfrom(65535)
        return Captured(data, addr[2])

    def frames(self, incoming: bool = True, l4_only: bool = True) -> list[bytes]:
        """Captured frames (by default: received ones that are IPv4/IPv6 UDP/TCP)."""
        out = [c.frame for c in self.items if c.incoming or not incoming]
        return [f for f in out if parse_l4(f) is not None] if l4_only else out


# --- the lab --------------------------------------------------------------------------------
class Lab:
    """Two netns (src: sender, dst: appliance) joined by a veth pair; XDP goes on dst_if."""

    def __init__(self, prefix: str = "mpxt", offloads_off: bool = True) -> None:
        tag = f"{prefix}-{secrets.token_hex(4)}"
        assert len(tag) + 1 <= 15, "prefix too long for interface names"
        self.name = tag
        self.src, self.dst = f"{tag}-src", f"{tag}-dst"
        self.src_if, self.dst_if = f"{tag}s", f"{tag}d"
        self.src_mac, self.dst_mac = SRC_MAC, DST_MAC
        self.src4, self.dst4, self.src6, self.dst6 = SRC4, DST4, SRC6, DST6
        self.offloads_off = offloads_off
        self._created: list[str] = []
        self._collectors: list[_Collector] = []
        self._tx: socket.socket | None = None

    # lifecycle
    def __enter__(self) -> Lab:
        _LIVE.add(self)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        for ns in (self.src, self.dst):
            _ip("netns", "add", ns)
            self._created.append(ns)
        # Created inside src, the peer straight into dst: never visible in the caller's netns.
        _ip("-n", self.src, "link", "add", self.src_if, "address", _mac(SRC_MAC), "type", "veth",
            "peer", "name", self.dst_if, "address", _mac(DST_MAC), "netns", self.dst)  # fmt: skip
        self._configure(self.src, self.src_if, (SRC4, SRC6), (DST4, DST6), DST_MAC)
        self._configure(self.dst, self.dst_if, (DST4, DST6), (SRC4, SRC6), SRC_MAC)
        for ns, dev in ((self.src, self.src_if), (self.dst, self.dst_if)):
            _wait_up(ns, dev)

    def _configure(
        self, ns: str, dev: str, mine: tuple[str, str], peer: tuple[str, str], peer_mac: bytes
    ) -> None:
        batch = [
            "link set lo up",
            f"addr add {mine[0]}/24 dev {dev}",
            f"addr add {mine[1]}/64 dev {dev} nodad",
            f"link set {dev} up",
            f"neigh replace {peer[0]} lladdr {_mac(peer_mac)} dev {dev} nud permanent",
            f"neigh replace {peer[1]} lladdr {_mac(peer_mac)} dev {dev} nud permanent",
        ]
        res = subprocess.run(["ip", "-n", ns, "-batch", "-"], input="\n".join(batch) + "\n",
                             capture_output=True, text=True, check=False)  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"configuring {ns}: {res.stderr.strip()}")
        if self.offloads_off:
            self.run(ns, ["ethtool", "-K", dev, "tx", "off", "rx", "off", "gro", "off"])

    def close(self) -> None:
        """Stop collectors, close sockets, delete both namespaces (and so the veth pair)."""
        for col in self._collectors:
            with suppress(Exception):
                col.stop()
        self._collectors.clear()
        if self._tx is not None:
            self._tx.close()
            self._tx = None
        for ns in reversed(self._created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self._created.clear()
        _LIVE.discard(self)

    # running things inside
    def run(
        self, ns: str, cmd: Sequence[str] | str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd (argv, or a shell string) in netns ns; stdout/stderr captured as text."""
        argv = ["ip", "netns", "exec", ns, *(["sh", "-c", cmd] if isinstance(cmd, str) else cmd)]
        return _cmd(argv) if check else subprocess.run(argv, capture_output=True, text=True)

    def in_netns(self, ns: str) -> AbstractContextManager[None]:
        """Context manager: the calling thread runs in netns ns (sockets, pyroute2, ...)."""
        return in_netns(ns)

    # traffic
    def udp_receiver(self, ports: Iterable[int]) -> UdpReceiver:
        """Started receiver with one dual-stack socket per port, bound in the dst netns."""
        socks: list[tuple[socket.socket, Any]] = []
        try:
            with in_netns(self.dst):
                for port in ports:
                    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                    socks.append((sock, port))
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                    sock.bind(("::", port))
        except BaseException:
            for sock, _ in socks:  # an open socket would keep the netns (and veth) alive
                sock.close()
            raise
        return self._track(UdpReceiver(socks))

    def capture(self, ns: str | None = None, dev: str | None = None) -> Capture:
        """Started capture of every frame on dev (default: dst_if, in the dst netns)."""
        with in_netns(ns or self.dst):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((dev or self.dst_if, ETH_P_ALL))
        return self._track(Capture([(sock, None)]))

    def send_frames(self, frames: Iterable[bytes]) -> int:
        """Send raw Ethernet frames out of src_if (from the src netns), in order, pinned to one
        CPU so that they arrive in order too. Returns the number sent."""
        if self._tx is None:
            with in_netns(self.src):
                self._tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
                self._tx.bind((self.src_if, 0))
        n = 0
        with _pinned():
            for frame in frames:
                self._tx.send(frame)
                n += 1
        return n

    def send_udp(
        self, payloads: Iterable[bytes], port: int, version: int = 4, sport: int = 0
    ) -> None:
        """Send datagrams from a UDP socket in the src netns to the dst address (port)."""
        family, dst = (socket.AF_INET, DST4) if version == 4 else (socket.AF_INET6, DST6)
        with in_netns(self.src):
            sock = socket.socket(family, socket.SOCK_DGRAM)
        with sock, _pinned():
            sock.bind(("", sport))
            for payload in payloads:
                sock.sendto(payload, (dst, port))

    def udp_frame(self, payload: bytes, dport: int, version: int = 4, **kw: Any) -> bytes:
        return build_frame(version, UDP, payload, dport, **kw)

    def tcp_frame(self, payload: bytes, dport: int, version: int = 4, **kw: Any) -> bytes:
        return build_frame(version, TCP, payload, dport, **kw)

    def _track(self, col: C) -> C:
        self._collectors.append(col)
        return col


def _operstate(ns: str, dev: str) -> str:
    out = _cmd(["ip", "-n", ns, "-j", "link", "show", "dev", dev]).stdout
    return str(json.loads(out)[0].get("operstate", "?"))


def _wait_up(ns: str, dev: str, timeout: float = 3.0) -> None:
    state = wait_until(partial(_operstate, ns, dev), lambda s: s == "UP", timeout)
    if state != "UP":
        raise RuntimeError(f"{dev} in {ns} did not come up (operstate {state})")


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@contextmanager
def _pinned() -> Iterator[None]:
    """Pin the calling thread to one CPU (keeps frames on one backlog/queue, so in order)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def wait_until(fn: Callable[[], Any], pred: Callable[[Any], bool], timeout: float = 3.0) -> Any:
    """Poll fn() until pred(value) holds or timeout passes; return the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not pred(value) and time.monotonic() < deadline:
        time.sleep(0.01)
        value = fn()
    return value


@atexit.register
def _cleanup_live() -> None:
    for lab in list(_LIVE):
        lab.close()
