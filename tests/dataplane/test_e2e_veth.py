"""End to end through a real veth pair: the compiled program, attached native or generic.

Frames are sent from the src netns (raw AF_PACKET, so the receiver verifies every checksum, or
from a UDP socket with checksum offload off) to the appliance netns, where XDP sits on the veth.
Checked there: what UDP sockets receive (exact payload bytes), what an AF_PACKET capture on the
veth sees (taps run after XDP: the rewritten frames, compared byte for byte with a frame whose
checksum was fully recomputed), and the per-service counters (packets and frame bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from mplexctl.backend import netlink
from mplexctl.backend.loader import compile_and_load
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import parse_config
from mplexctl.constants import VERDICTS
from tests.support.frames import (
    UDP,
    compute_l4_checksum,
    l4_checksum_ok,
    parse_l4,
    ports,
    with_dport,
)
from tests.support.lab import Lab
from tests.support.netns import wait_until
from tests.support.traffic import Capture, UdpReceiver

pytestmark = pytest.mark.kernel

ROUTES = {b"600": 5001, b"601": 5002, b"602": 5003}
SERVICE_PORT = 5000
OTHER_PORT = 7000  # not a service port: must pass untouched
RX_PORTS = (SERVICE_PORT, *ROUTES.values(), OTHER_PORT)
UDP_SVC, TCP_SVC = "telemetry", "telemetry-tcp"
TIMEOUT = 3.0  # for the first sign of traffic
SETTLE = 0.5  # for the rest, once a later frame was seen

CONFIG = """\
version: 1
interfaces:
  - {{name: {ifname}, xdp_mode: {mode}}}
services:
  - name: telemetry
    protocol: udp
    port: 5000
    payload_length: [{{min: 290, max: 294}}]
    tag: {{offset: 20, length: 3}}
    routes: {{"600": 5001, "601": 5002, "602": 5003}}
    unmatched: {unmatched}
  - name: telemetry-tcp
    protocol: tcp
    port: 5000
    payload_length: [{{min: 290, max: 294}}]
    tag: {{offset: 20, length: 3}}
    routes: {{"600": 5001, "601": 5002, "602": 5003}}
    unmatched: drop
"""

Counters = dict[tuple[str, str], tuple[int, int]]


@pytest.fixture(params=["native", "generic"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Appliance:
    build: Build
    pm: ProgramMaps

    def counters(self) -> Counters:
        """(service name, verdict name) -> (packets, bytes), every service and verdict."""
        raw = self.pm.service_counters()
        return {
            (s.name, v): raw.get((s.index, i), (0, 0))
            for s in self.build.services
            for i, v in enumerate(VERDICTS)
        }


@contextmanager
def attached(lab: Lab, mode: str, unmatched: str = "drop") -> Iterator[Appliance]:
    """Compile, load, fill and attach the program on lab.dst_if in `mode`; detach after."""
    text = CONFIG.format(ifname=lab.dst_if, mode=mode, unmatched=unmatched)
    build = compile_config(parse_config(text, "e2e.yaml"))
    loaded = compile_and_load(build)
    try:
        pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
        pm.fill(build)
        with lab.in_netns(lab.dst):
            link = netlink.get_link(lab.dst_if)
            assert link is not None
            netlink.attach(link, loaded.prog_fd, mode)
            now = netlink.get_link(lab.dst_if)
        assert now is not None and (now.mode, now.prog_id) == (mode, pm.prog_id)
        yield Appliance(build, pm)
    finally:
        detach(lab)
        loaded.close()


def detach(lab: Lab) -> None:
    with lab.in_netns(lab.dst):
        link = netlink.get_link(lab.dst_if)
        if link is not None and link.prog_id:
            netlink.detach(link)


def payload(tag: bytes, length: int, seq: int) -> bytes:
    """length bytes: a unique 20-byte head, the tag at offset 20, then a seq-dependent body."""
    head = f"mpx-e2e-{seq:06d}".encode().ljust(20, b".")
    body = bytes((seq * 31 + i) & 0xFF for i in range(length - 20 - len(tag)))
    return head + tag + body


def zero_after_rewrite(lab: Lab, data: bytes, version: int, new_port: int) -> bytes:
    """A UDP frame to the service port whose checksum becomes 0 (sent as 0xFFFF) once its
    destination port is rewritten to new_port: the source port is chosen to make it so."""
    probe = with_dport(lab.udp_frame(data, SERVICE_PORT, version, sport=0), new_port)
    view = parse_l4(probe)
    assert view is not None
    rest = ~compute_l4_checksum(probe) & 0xFFFF  # ones' sum with sport 0 and checksum 0
    sport = 0xFFFF - rest
    assert sport != 0
    return lab.udp_frame(data, SERVICE_PORT, version, sport=sport)


def udp_checksum_field(frame: bytes) -> int:
    view = parse_l4(frame)
    assert view is not None and view.proto == UDP
    return int.from_bytes(frame[view.csum_off : view.csum_off + 2], "big")


@dataclass
class Expect:
    """What sending `frames` in order must produce on the appliance."""

    app: Appliance
    frames: list[bytes] = field(default_factory=list)
    captured: list[bytes] = field(default_factory=list)
    delivered: dict[int, list[bytes]] = field(default_factory=lambda: {p: [] for p in RX_PORTS})
    counters: Counters = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counters = dict.fromkeys(self.app.counters(), (0, 0))

    def _count(self, svc: str, verdict: str, frame: bytes) -> None:
        packets, nbytes = self.counters[(svc, verdict)]
        self.counters[(svc, verdict)] = (packets + 1, nbytes + len(frame))  # data_end - data

    def rewrite(self, svc: str, frame: bytes, port: int, data: bytes | None) -> None:
        self.frames.append(frame)
        self.captured.append(with_dport(frame, port))
        if data is not None:
            self.delivered[port].append(data)
        self._count(svc, "rewrite", frame)

    def drop(self, svc: str, frame: bytes, verdict: str) -> None:
        self.frames.append(frame)
        self._count(svc, verdict, frame)

    def untouched(self, frame: bytes, port: int, data: bytes, svc: str | None = None) -> None:
        self.frames.append(frame)
        self.captured.append(frame)
        self.delivered[port].append(data)
        if svc is not None:
            self._count(svc, "pass_unmatched", frame)


def exchange(lab: Lab, exp: Expect) -> None:
    """Send exp.frames (then a marker to a non-service port) and check every observation."""
    marker = lab.udp_frame(b"marker: everything before me was processed", OTHER_PORT)
    exp.untouched(marker, OTHER_PORT, b"marker: everything before me was processed")
    with lab.udp_receiver(RX_PORTS) as rx, lab.capture() as cap:
        lab.send_frames(exp.frames)
        check(exp, rx, cap)


def check(exp: Expect, rx: UdpReceiver, cap: Capture) -> None:
    # Frames leave one CPU in order and arrive in order: once the marker is in, the rest is done;
    # the short extra waits are only a margin.
    assert rx.wait(lambda items: any(d.payload.startswith(b"marker") for d in items), TIMEOUT)
    rx.wait_count(sum(len(v) for v in exp.delivered.values()), SETTLE)
    cap.wait(lambda _: len(cap.frames()) >= len(exp.captured), SETTLE)
    counters = wait_until(exp.app.counters, lambda c: c == exp.counters, SETTLE)

    assert {p: rx.payloads(p) for p in RX_PORTS} == exp.delivered
    seen = cap.frames()
    assert [f.hex() for f in seen] == [f.hex() for f in exp.captured]
    assert all(l4_checksum_ok(f) for f in seen)
    assert counters == exp.counters


def test_udp_raw_frames_routed_dropped_passed(lab: Lab, mode: str) -> None:
    with attached(lab, mode) as app:
        exp = Expect(app)
        seq = 0
        for version in (4, 6):
            for i, (tag, port) in enumerate(ROUTES.items()):
                for length in (290 + i, 294 - i):  # 290/294, 291/293, 292/292
                    seq += 1
                    data = payload(tag, length, seq)
                    exp.rewrite(UDP_SVC, lab.udp_frame(data, SERVICE_PORT, version), port, data)
            for length in (289, 295):
                seq += 1
                frame = lab.udp_frame(payload(b"600", length, seq), SERVICE_PORT, version)
                exp.drop(UDP_SVC, frame, "drop_length")
            for tag in (b"599", b"60\0", b"\xff\xff\xff"):
                seq += 1
                frame = lab.udp_frame(payload(tag, 292, seq), SERVICE_PORT, version)
                exp.drop(UDP_SVC, frame, "drop_unknown_tag")
            seq += 1
            data = payload(b"600", 292, seq)
            exp.untouched(lab.udp_frame(data, OTHER_PORT, version), OTHER_PORT, data)
            seq += 1
            data = payload(b"601", 293, seq)
            frame = zero_after_rewrite(lab, data, version, ROUTES[b"601"])
            exp.rewrite(UDP_SVC, frame, ROUTES[b"601"], data)
            assert udp_checksum_field(exp.captured[-1]) == 0xFFFF
        seq += 1
        data = payload(b"602", 290, seq)  # IPv4 without a UDP checksum: rewritten, stays 0
        frame = lab.udp_frame(data, SERVICE_PORT, 4, zero_csum=True)
        exp.rewrite(UDP_SVC, frame, ROUTES[b"602"], data)
        exchange(lab, exp)


def test_tcp_segments_rewritten(lab: Lab, mode: str) -> None:
    with attached(lab, mode) as app:
        exp = Expect(app)
        seq = 0
        for version in (4, 6):
            for tag, port in ROUTES.items():
                seq += 1
                frame = lab.tcp_frame(payload(tag, 292, seq), SERVICE_PORT, version, sport=seq)
                exp.rewrite(TCP_SVC, frame, port, None)  # no listener: the kernel answers RST
            seq += 1
            frame = lab.tcp_frame(payload(b"600", 289, seq), SERVICE_PORT, version, sport=seq)
            exp.drop(TCP_SVC, frame, "drop_length")
            seq += 1
            frame = lab.tcp_frame(payload(b"666", 292, seq), SERVICE_PORT, version, sport=seq)
            exp.drop(TCP_SVC, frame, "drop_unknown_tag")
        exchange(lab, exp)


def test_unmatched_pass_then_detach(lab: Lab, mode: str) -> None:
    with attached(lab, mode, unmatched="pass") as app:
        exp = Expect(app)
        for version, seq in ((4, 1), (6, 2)):
            data = payload(b"777", 292, seq)
            exp.untouched(lab.udp_frame(data, SERVICE_PORT, version), SERVICE_PORT, data, UDP_SVC)
            data = payload(b"600", 290, seq + 10)
            exp.rewrite(UDP_SVC, lab.udp_frame(data, SERVICE_PORT, version), 5001, data)
            frame = lab.udp_frame(payload(b"600", 295, seq + 20), SERVICE_PORT, version)
            exp.drop(UDP_SVC, frame, "drop_length")
        exchange(lab, exp)
        before = app.counters()

        detach(lab)
        after = Expect(app)
        after.counters = before
        data = payload(b"600", 292, 99)  # routed while attached; now nobody rewrites it
        after.untouched(lab.udp_frame(data, SERVICE_PORT, 4), SERVICE_PORT, data)
        exchange(lab, after)


def test_udp_socket_datagrams(lab: Lab, mode: str) -> None:
    """Kernel-built datagrams (offload off: full checksums) from sockets, IPv4 and IPv6."""
    with attached(lab, mode) as app:
        rx, cap = lab.udp_receiver(RX_PORTS), lab.capture()
        sent: dict[int, list[bytes]] = {p: [] for p in RX_PORTS}
        seq = 0
        for version in (4, 6):
            for tag, port in ROUTES.items():
                seq += 1
                data = payload(tag, 290 + seq % 5, seq)
                lab.send_udp([data], SERVICE_PORT, version)
                sent[port].append(data)
            seq += 1
            lab.send_udp([payload(b"600", 295, seq)], SERVICE_PORT, version)  # dropped
        lab.send_udp([b"marker"], OTHER_PORT)
        sent[OTHER_PORT].append(b"marker")

        assert rx.wait(lambda items: any(d.payload == b"marker" for d in items), TIMEOUT)
        rx.wait_count(sum(len(v) for v in sent.values()), SETTLE)
        cap.wait(lambda _: len(cap.frames()) >= 7, SETTLE)
        assert {p: rx.payloads(p) for p in RX_PORTS} == sent
        seen = [f for f in cap.frames() if parse_l4(f).proto == UDP]  # type: ignore[union-attr]
        routed = seen[:-1]
        assert [ports(f)[1] for f in routed] == [*ROUTES.values()] * 2
        assert all(l4_checksum_ok(f) for f in seen)
        frame_bytes = sum(len(f) for f in routed)
        dropped_bytes = (14 + 20 + 8 + 295) + (14 + 40 + 8 + 295)
        counters = wait_until(app.counters, lambda c: c[(UDP_SVC, "drop_length")][0] == 2, SETTLE)
        assert counters[(UDP_SVC, "rewrite")] == (6, frame_bytes)
        assert counters[(UDP_SVC, "drop_length")] == (2, dropped_bytes)
        assert sum(p for (svc, _), (p, _) in counters.items() if svc == TCP_SVC) == 0
