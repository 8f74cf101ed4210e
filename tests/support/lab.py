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
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from typing import Any, TypeVar

from tests.support import frames
from tests.support.frames import DST4, DST6, DST_MAC, SRC4, SRC6, SRC_MAC, TCP, UDP
from tests.support.netns import Netlab, in_netns, mac_text
from tests.support.traffic import Capture, Collector, UdpReceiver, raw_socket, send_frames, send_udp

C = TypeVar("C", bound=Collector)


class Lab:
    """Two netns (src: sender, dst: appliance) joined by a veth pair; XDP goes on dst_if."""

    def __init__(self, prefix: str = "mpxt", offloads_off: bool = True) -> None:
        self.net = Netlab(prefix)
        tag = self.net.tag
        assert len(tag) + 1 <= 15, "prefix too long for interface names"
        self.name = tag
        self.src, self.dst = f"{tag}-src", f"{tag}-dst"
        self.src_if, self.dst_if = f"{tag}s", f"{tag}d"
        self.src_mac, self.dst_mac = SRC_MAC, DST_MAC
        self.src4, self.dst4, self.src6, self.dst6 = SRC4, DST4, SRC6, DST6
        self.offloads_off = offloads_off
        self._collectors: list[Collector] = []
        self._tx: socket.socket | None = None

    def __enter__(self) -> Lab:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _setup(self) -> None:
        net = self.net
        net.add_netns(self.src)
        net.add_netns(self.dst)
        net.add_veth(self.src, self.src_if, self.dst, self.dst_if, mac=SRC_MAC, peer_mac=DST_MAC)
        for ns, dev, mine, peer, peer_mac in (
            (self.src, self.src_if, (SRC4, SRC6), (DST4, DST6), DST_MAC),
            (self.dst, self.dst_if, (DST4, DST6), (SRC4, SRC6), SRC_MAC),
        ):
            net.address(ns, dev, f"{mine[0]}/24", f"{mine[1]}/64")
            for addr in peer:
                net.neighbour(ns, dev, addr, mac_text(peer_mac))
            if self.offloads_off:
                net.offloads_off(ns, dev, "tx", "rx", "gro")
        for ns, dev in ((self.src, self.src_if), (self.dst, self.dst_if)):
            net.wait_up(ns, dev)

    def close(self) -> None:
        """Stop collectors, close sockets, delete both namespaces (and so the veth pair)."""
        for col in self._collectors:
            with suppress(Exception):
                col.stop()
        self._collectors.clear()
        if self._tx is not None:
            self._tx.close()
            self._tx = None
        self.net.close()

    # running things inside
    def run(
        self, ns: str, command: Sequence[str] | str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (argv, or a shell string) in netns ns; output captured as text."""
        argv = ["ip", "netns", "exec", ns]
        argv += ["sh", "-c", command] if isinstance(command, str) else list(command)
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def in_netns(self, ns: str) -> AbstractContextManager[None]:
        """Context manager: the calling thread runs in netns ns (sockets, pyroute2, ...)."""
        return in_netns(ns)

    # traffic
    def udp_receiver(self, ports: Iterable[int]) -> UdpReceiver:
        """Started receiver with one dual-stack socket per port, bound in the dst netns."""
        return self._track(UdpReceiver.open(self.dst, ports))

    def capture(self, ns: str | None = None, dev: str | None = None) -> Capture:
        """Started capture of every frame on dev (default: dst_if, in the dst netns)."""
        return self._track(Capture.open(ns or self.dst, dev or self.dst_if))

    def send_frames(self, frames_: Iterable[bytes]) -> int:
        """Send raw Ethernet frames out of src_if (from the src netns), in order."""
        if self._tx is None:
            self._tx = raw_socket(self.src, self.src_if)
        return send_frames(self._tx, frames_)

    def send_udp(
        self, payloads: Iterable[bytes], port: int, version: int = 4, sport: int = 0
    ) -> None:
        """Send datagrams from a UDP socket in the src netns to the dst address (port)."""
        send_udp(self.src, payloads, DST4 if version == 4 else DST6, port, sport)

    def udp_frame(self, payload: bytes, dport: int, version: int = 4, **kw: Any) -> bytes:
        return frames.build_frame(version, UDP, payload, dport, **kw)

    def tcp_frame(self, payload: bytes, dport: int, version: int = 4, **kw: Any) -> bytes:
        return frames.build_frame(version, TCP, payload, dport, **kw)

    def _track(self, col: C) -> C:
        self._collectors.append(col)
        return col
