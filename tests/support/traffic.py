"""Traffic inside test namespaces: sockets read by a thread (UDP receivers, AF_PACKET
captures), raw frames and datagrams sent, a paced UDP stream counted per port, and the
port each tagged datagram arrives on. Every socket is opened inside a namespace a test made.
Close what you open: an open socket keeps a deleted namespace alive."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from tests.support.frames import ETH_P_ALL, TAG_OFFSET, parse_l4, payload
from tests.support.netns import in_netns, pinned

PACKET_OUTGOING = 4
MARKER = b"marker: every datagram before me was handled"
MARKER_SETTLE = 0.3  # seconds a datagram sent before a marker may still trail it
_STOP = object()


class Collector:
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


@dataclass(frozen=True)
class Datagram:
    port: int  # the local port it arrived on
    payload: bytes
    peer: tuple[Any, ...]


class UdpReceiver(Collector):
    """UDP sockets bound on ports in one netns; .items is a list of Datagram."""

    @classmethod
    def open(cls, ns: str, ports: Iterable[int], addr: str = "::") -> UdpReceiver:
        """Started receiver, one socket per port bound to addr ("::": dual-stack) in ns."""
        socks: list[tuple[socket.socket, Any]] = []
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        try:
            with in_netns(ns):
                for port in ports:
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    socks.append((sock, port))
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                    sock.bind((addr, port))
        except BaseException:
            for sock, _ in socks:  # an open socket would keep the netns (and veth) alive
                sock.close()
            raise
        return cls(socks)

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


class Capture(Collector):
    """An AF_PACKET ETH_P_ALL socket on one interface; .items is a list of Captured."""

    @classmethod
    def open(cls, ns: str, dev: str) -> Capture:
        with in_netns(ns):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((dev, ETH_P_ALL))
        return cls([(sock, None)])

    def _read(self, sock: socket.socket, key: Any) -> Captured:
        data, addr = sock.recvfrom(65535)
        return Captured(data, addr[2])

    def frames(self, incoming: bool = True, l4_only: bool = True) -> list[bytes]:
        """Captured frames (by default: received ones that are IPv4/IPv6 UDP/TCP)."""
        out = [c.frame for c in self.items if c.incoming or not incoming]
        return [f for f in out if parse_l4(f) is not None] if l4_only else out


def raw_socket(ns: str, dev: str) -> socket.socket:
    """An AF_PACKET socket sending out of dev in ns."""
    with in_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        sock.bind((dev, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def send_frames(sock: socket.socket, frames: Iterable[bytes]) -> int:
    """Send raw frames in order, pinned to one CPU so that they arrive in order too."""
    n = 0
    with pinned():
        for frame in frames:
            sock.send(frame)
            n += 1
    return n


def send_udp(ns: str, payloads: Iterable[bytes], dst: str, port: int, sport: int = 0) -> None:
    """Send datagrams from a UDP socket in ns to dst:port."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with in_netns(ns):
        sock = socket.socket(family, socket.SOCK_DGRAM)
    with sock, pinned():
        sock.bind(("", sport))
        for data in payloads:
            sock.sendto(data, (dst, port))


def routed_ports(
    rx_ns: str, tx_ns: str, dst: str, tags: list[str], ports: list[int], service_port: int = 5000
) -> dict[str, int]:
    """Send one datagram per tag to dst:service_port from tx_ns; the port each one arrived on
    in rx_ns (0: none arrived).

    A marker datagram to another port (no service's: passed as it is) follows the tags, sent
    from the same CPU over the same veth: once it is in, every tag before it has been handled
    too, so a tag not in by then (after a short settle for the receive path's batching) was
    dropped. No full timeout is waited for each dropped tag; without the marker, 1.5 s."""
    listen = sorted({service_port, *ports})
    marker_port = max(listen) + 1
    got = {tag: 0 for tag in tags}
    with UdpReceiver.open(rx_ns, [*listen, marker_port], dst) as rx:
        send_udp(tx_ns, [payload(t.encode()) for t in tags], dst, service_port)
        send_udp(tx_ns, [MARKER], dst, marker_port)
        rx.wait(lambda items: any(d.port == marker_port for d in items), 1.5)
        rx.wait(lambda items: len(items) > len(tags), MARKER_SETTLE)
        for d in rx.items:
            if d.port == marker_port:
                continue
            tag = d.payload[TAG_OFFSET : TAG_OFFSET + 3].decode(errors="replace")
            if tag in got:
                got[tag] = d.port
    return got


_RECEIVER = textwrap.dedent(
    """
    import json, select, socket, sys, time
    ip, ports, idle = sys.argv[1], [int(p) for p in sys.argv[2].split(",")], float(sys.argv[3])
    marker, settle = int(sys.argv[4]), float(sys.argv[5])
    socks = {}
    for port in [*ports, marker]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: past rmem_max
        s.bind((ip, port))
        s.setblocking(False)
        socks[s] = port
    print("ready", flush=True)
    counts = {p: 0 for p in ports}
    seqs = set()
    last = time.time() + 30
    while time.time() - last < idle:
        for s in select.select(list(socks), [], [], 0.05)[0]:
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                last = time.time()
                if socks[s] == marker:  # the sender's last word: wait `settle`, not `idle`
                    idle = settle
                    continue
                counts[socks[s]] += 1
                seqs.add(int.from_bytes(data[:4], "big"))
    print(json.dumps({"counts": counts, "unique": len(seqs)}), flush=True)
    """
)

_SENDER = textwrap.dedent(
    """
    import select, socket, sys, time
    ip, tag, limit, pps = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
    marker = int(sys.argv[5])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    base = bytearray(b"x" * 292)
    base[20:23] = tag
    start, i = time.time(), 0
    while i < limit:  # until stdin closes (or the safety limit)
        if i % 100 == 0 and select.select([sys.stdin], [], [], 0)[0]:
            break
        base[:4] = i.to_bytes(4, "big")
        s.sendto(base, (ip, 5000))
        i += 1
        while time.time() - start < i / pps:
            pass
    s.sendto(b"end", (ip, marker))  # after every datagram counted, to a port no service has
    print("sent", i, flush=True)
    """
)


def _python_in(ns: str, code: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args]


STREAM_MARKER_PORT = 5999  # no test service's port: the marker is passed as it is


class Stream:
    """A steady UDP stream across the wire, counted per receiving port: receivers in the
    host netns, a paced sender in the sender netns (each its own process).

    The receiver stops once nothing has arrived for 1 s, or for MARKER_SETTLE after the
    sender's closing marker datagram (sent after the last counted one, so all of them have
    been handled by then, bar the receive path's batching)."""

    def __init__(self, host_ns: str, sender_ns: str, dst_ip: str, ports: list[int]) -> None:
        assert STREAM_MARKER_PORT not in ports
        argv = _python_in(
            host_ns,
            _RECEIVER,
            dst_ip,
            ",".join(map(str, ports)),
            "1.0",
            str(STREAM_MARKER_PORT),
            str(MARKER_SETTLE),
        )
        self.recv = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.recv.stdout is not None and self.recv.stdout.readline().strip() == "ready"
        self.sender_ns, self.dst_ip = sender_ns, dst_ip
        self.send: subprocess.Popen[str] | None = None

    def start(self, tag: str, count: int, pps: int) -> None:
        """Send `tag` datagrams at `pps` until finish() (at most `count`)."""
        argv = _python_in(
            self.sender_ns, _SENDER, self.dst_ip, tag, str(count), str(pps), str(STREAM_MARKER_PORT)
        )
        self.send = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def finish(self) -> dict[str, object]:
        """Stop the sender; the receivers' counts plus "sent"."""
        assert self.send is not None
        out, _ = self.send.communicate("stop\n", timeout=120)
        assert out.startswith("sent"), out
        result, _ = self.recv.communicate(timeout=60)
        doc: dict[str, object] = json.loads(result)
        doc["sent"] = int(out.split()[1])
        return doc
