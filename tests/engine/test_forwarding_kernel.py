"""Forwarding with checksum offload (issue 14, measured-here item 12): namespace A sends
from a socket with tx checksum offload on (CHECKSUM_PARTIAL skbs) -> namespace R runs
mplex at the TC ingress of its veth from A and forwards -> namespace B, through a veth with
tx checksum offload off at R (R must fill the checksum, as a NIC would). Every rewritten
datagram must reach B with a valid checksum: B's InCsumErrors unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.hosts import ROOT
from tests.support.netns import Netlab, sh

pytestmark = pytest.mark.kernel

RECEIVE = textwrap.dedent(
    """
    import json, select, socket, sys, time
    socks = {}
    for fam, ip in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for port in (5000, 5001):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((ip, port))
            socks[s] = f"{port}/{'v6' if fam == socket.AF_INET6 else 'v4'}"
    print("ready", flush=True)
    counts = dict.fromkeys(socks.values(), 0)
    start = last = time.time()  # until 2 s without a datagram (after the first), at most 30 s
    while time.time() - start < 30 and (sum(counts.values()) == 0 or time.time() - last < 2):
        for s in select.select(list(socks), [], [], 0.2)[0]:
            s.recv(4096)
            counts[socks[s]] += 1
            last = time.time()
    print(json.dumps(counts), flush=True)
    """
)

SEND = textwrap.dedent(
    """
    import socket, sys, time
    for ip in sys.argv[1:]:
        s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
        body = bytearray(b"p" * 292)
        body[20:23] = b"600"
        for i in range(200):
            body[:4] = i.to_bytes(4, "big")
            s.sendto(bytes(body), (ip, 5000))
            time.sleep(0.001)
    """
)


# A few datagrams to a port that is no service (nobody listens: dropped at B) on each path.
WARM_UP = textwrap.dedent(
    """
    import socket, sys, time
    for _ in range(5):
        for ip in sys.argv[1:]:
            s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"warm-up", (ip, 7000))
        time.sleep(0.3)
    """
)


@dataclass
class Path3:
    a: str
    r: str
    b: str
    r_in: str  # R's veth from A: mplex runs at its ingress
    tmp: Path


def _ns_exec(ns: str, *cmd: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, text=True
    ).stdout


def csum_errors(ns: str) -> dict[str, int]:
    """InCsumErrors of Udp and Udp6 in netns ns."""
    out = {}
    snmp = _ns_exec(ns, "cat", "/proc/net/snmp").splitlines()
    names, values = [ln.split() for ln in snmp if ln.startswith("Udp:")]
    out["v4"] = int(values[names.index("InCsumErrors")])
    for line in _ns_exec(ns, "cat", "/proc/net/snmp6").splitlines():
        if line.startswith("Udp6InCsumErrors"):
            out["v6"] = int(line.split()[1])
    return out


@pytest.fixture
def path3(tmp_path: Path) -> Iterator[Path3]:
    """A -> R -> B: three namespaces, two veth pairs, routes via R (tests/support/netns.py)."""
    with Netlab("mpxf", hex_digits=6) as net:
        tag = net.hex
        p = Path3(f"mpxa-{tag}", f"mpxr-{tag}", f"mpxb-{tag}", f"ri{tag}", tmp_path)
        for ns in (p.a, p.r, p.b):
            net.add_netns(ns, lo=False)
        net.add_veth(p.a, f"a{tag}", p.r, p.r_in, up=False)
        net.add_veth(p.r, f"ro{tag}", p.b, f"b{tag}", up=False)
        for ns, dev, v4, v6 in (
            (p.a, f"a{tag}", "10.14.1.1/24", "2001:db8:141::1/64"),
            (p.r, p.r_in, "10.14.1.2/24", "2001:db8:141::2/64"),
            (p.r, f"ro{tag}", "10.14.2.1/24", "2001:db8:142::1/64"),
            (p.b, f"b{tag}", "10.14.2.2/24", "2001:db8:142::2/64"),
        ):
            net.address(ns, dev, v4, v6)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", p.a, "route", "add", "10.14.2.0/24", "via", "10.14.1.2")
        sh("ip", "-n", p.a, "route", "add", "2001:db8:142::/64", "via", "2001:db8:141::2")
        sh("ip", "-n", p.b, "route", "add", "10.14.1.0/24", "via", "10.14.2.1")
        sh("ip", "-n", p.b, "route", "add", "2001:db8:141::/64", "via", "2001:db8:142::1")
        sh("ip", "netns", "exec", p.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", p.r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # A keeps tx checksum offload on (the default); R's egress towards B has it off.
        net.offloads_off(p.r, f"ro{tag}", "tx")
        yield p


def test_forwarded_rewrites_keep_valid_checksums_at_tc(path3: Path3) -> None:
    offload = _ns_exec(path3.a, "ethtool", "-k", f"a{path3.r_in[2:]}")
    assert "tx-checksumming: on" in offload, offload
    cfg = path3.tmp / "r.yaml"
    cfg.write_text(
        f"version: 1\ninterfaces: [{{name: {path3.r_in}, hook: tc}}]\nservices:\n"
        "  - name: telemetry\n    protocol: udp\n    port: 5000\n"
        "    payload_length: [{min: 290, max: 294}]\n    tag: {offset: 20, length: 3}\n"
        '    routes: {"600": 5001}\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", "apply", str(cfg), "--netns", path3.r],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    # Resolve the neighbours first (ARP / NDP on both hops): datagrams queued while a
    # neighbour is unresolved may be dropped, which is not what this test is about.
    _ns_exec(path3.a, sys.executable, "-c", WARM_UP, "10.14.2.2", "2001:db8:142::2")
    before = csum_errors(path3.b)
    recv = subprocess.Popen(
        ["ip", "netns", "exec", path3.b, sys.executable, "-c", RECEIVE],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
    _ns_exec(path3.a, sys.executable, "-c", SEND, "10.14.2.2", "2001:db8:142::2")
    out, _ = recv.communicate(timeout=60)
    counts = json.loads(out)
    assert counts == {"5000/v4": 0, "5001/v4": 200, "5000/v6": 0, "5001/v6": 200}, (
        counts,
        csum_errors(path3.b),
        before,
    )
    assert csum_errors(path3.b) == before


# The corpus compare on real traffic: raw frames from A (AF_PACKET, complete checksums),
# captured as they leave R at B's end (AF_PACKET sees a frame after R's hook and routing).
MARK = b"CRPS"
CAPTURE = textwrap.dedent(
    """
    import json, select, socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((sys.argv[1], 0))
    print("ready", flush=True)
    got = {}
    start = last = time.time()  # until 2 s without a frame (after the first), at most 20 s
    while time.time() - start < 20 and (not got or time.time() - last < 2):
        if select.select([s], [], [], 0.2)[0]:
            frame, addr = s.recvfrom(65536)
            at = frame.find(MARK)
            if addr[2] != socket.PACKET_OUTGOING and at >= 0:
                got[frame[at - 4 : at].hex()] = frame.hex()
                last = time.time()
    print(json.dumps(got), flush=True)
    """
).replace("MARK", repr(MARK))
SEND_RAW = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((sys.argv[1], 0))
    for line in sys.stdin.read().split():
        s.send(bytes.fromhex(line))
        time.sleep(0.002)
    """
)
CORPUS_CFG = (
    "version: 1\ninterfaces: [{{name: {dev}{hook}}}]\nservices:\n"
    "  - name: telemetry\n    protocol: udp\n    port: 5000\n"
    "    payload_length: [{{min: 290, max: 294}}]\n    tag: {{offset: 20, length: 3}}\n"
    '    routes: {{"600": 5001, "601": 5002}}\n'
)


def _corpus(src_mac: bytes, dst_mac: bytes) -> tuple[list[bytes], dict[bytes, int | None]]:
    """Frames A -> B through R, and per frame id the UDP destination port it must reach B
    with (None: dropped at R): the expectations come from the config, not from a program."""
    from tests.support import frames as F

    out: list[bytes] = []
    expect: dict[bytes, int | None] = {}
    cases: list[tuple[int, bytes, int, int, bool, int | None]] = [
        # (proto, tag, length, dport, zero checksum, expected port at B)
        (F.UDP, b"600", 292, 5000, False, 5001),
        (F.UDP, b"601", 290, 5000, False, 5002),
        (F.UDP, b"601", 294, 5000, False, 5002),
        (F.UDP, b"600", 289, 5000, False, None),  # outside the length window
        (F.UDP, b"600", 295, 5000, False, None),
        (F.UDP, b"999", 292, 5000, False, None),  # no such route (unmatched: drop)
        (F.UDP, b"600", 292, 7000, False, 7000),  # not a service port: untouched
        (F.UDP, b"600", 292, 5001, False, 5001),
        (F.TCP, b"600", 292, 5000, False, 5000),  # the service is udp: untouched
        (F.UDP, b"600", 292, 5000, True, 5001),  # IPv4 checksum 0 stays 0
    ]
    for version, src, dst in (
        (4, "10.14.1.1", "10.14.2.2"),
        (6, "2001:db8:141::1", "2001:db8:142::2"),
    ):
        for proto, tag, length, dport, zero, port in cases:
            if zero and version == 6:
                continue
            ident = len(out).to_bytes(4, "big")
            data = bytearray(F.payload(tag, length))
            data[0:8] = ident + MARK
            frame = F.build_frame(
                version, proto, bytes(data), dport, zero_csum=zero,
                src_mac=src_mac, dst_mac=dst_mac, src=src, dst=dst,
            )  # fmt: skip
            out.append(frame)
            expect[ident] = port
    return out, expect


def _forward_corpus(p: Path3, frames: list[bytes]) -> dict[bytes, bytes]:
    """Frame id -> the frame as B received it."""
    tag = p.r_in[2:]
    cap = subprocess.Popen(
        ["ip", "netns", "exec", p.b, sys.executable, "-c", CAPTURE, f"b{tag}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert cap.stdout is not None and cap.stdout.readline().strip() == "ready"
    subprocess.run(
        ["ip", "netns", "exec", p.a, sys.executable, "-c", SEND_RAW, f"a{tag}"],
        input="\n".join(f.hex() for f in frames),
        check=True,
        text=True,
    )
    out, _ = cap.communicate(timeout=60)
    return {bytes.fromhex(k): bytes.fromhex(v) for k, v in json.loads(out).items()}


def test_hook_tc_forwards_the_corpus_as_xdp_does_both_ways(path3: Path3) -> None:
    """Contract: with hook tc (tcx, and clsact as without tcx) an independent frame corpus
    gives the same verdicts and bytes as with XDP, on real traffic through a forwarder."""
    from tests.support import frames as F
    from tests.support.netns import link_mac

    tag = path3.r_in[2:]
    frames, expect = _corpus(
        bytes.fromhex(link_mac(path3.a, f"a{tag}").replace(":", "")),
        bytes.fromhex(link_mac(path3.r, path3.r_in).replace(":", "")),
    )
    _ns_exec(path3.a, sys.executable, "-c", WARM_UP, "10.14.2.2", "2001:db8:142::2")
    seen: dict[str, dict[bytes, bytes]] = {}
    cfg = path3.tmp / "corpus.yaml"
    for mode, hook, via in (
        ("xdp", "", "auto"),
        ("tcx", ", hook: tc", "tcx"),
        ("clsact", ", hook: tc", "clsact"),
    ):
        cfg.write_text(CORPUS_CFG.format(dev=path3.r_in, hook=hook))
        for args in (("apply", str(cfg)), ("status", "--json")):
            r = subprocess.run(
                [sys.executable, "-m", "mplexctl", *args, "--netns", path3.r],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={**os.environ, "MPLEXCTL_TC_ATTACH": via},
            )
            assert r.returncode == 0, r.stderr + r.stdout
        if hook:
            assert f"tc mode ({via})" in subprocess.run(
                [sys.executable, "-m", "mplexctl", "status", "--netns", path3.r],
                capture_output=True, text=True, cwd=ROOT,
            ).stdout  # fmt: skip
        seen[mode] = _forward_corpus(path3, frames)
        r = subprocess.run(
            [sys.executable, "-m", "mplexctl", "detach", "--netns", path3.r],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert r.returncode == 0, r.stderr
    xdp = seen["xdp"]
    assert {k for k, v in expect.items() if v is not None} == set(xdp)
    for ident, frame in xdp.items():
        assert F.ports(frame)[1] == expect[ident], ident
        view = F.parse_l4(frame)
        assert view is not None
        zero = frame[view.csum_off : view.csum_off + 2] == b"\0\0"
        assert zero == (
            frames[int.from_bytes(ident, "big")][view.csum_off : view.csum_off + 2] == b"\0\0"
        )
        assert zero or F.l4_checksum_ok(frame), ident
    assert seen["tcx"] == xdp
    assert seen["clsact"] == xdp
