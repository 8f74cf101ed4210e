"""Traffic of the reply-path tests: echo backends, connected UDP clients, a third party
(each a Python process inside a test netns)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

V6_HOST, V6_SENDER = "2001:db8:14::2", "2001:db8:14::1"

ECHO = textwrap.dedent(
    """
    import select, socket, sys
    socks = []
    for port in [int(p) for p in sys.argv[1].split(",")]:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        socks.append(s)
    print("ready", flush=True)
    while True:
        ready = select.select(socks + [sys.stdin], [], [], 5)[0]
        if sys.stdin in ready or not ready:
            break
        for s in ready:
            data, peer = s.recvfrom(4096)
            s.sendto(data, peer)
    """
)

CLIENTS = textwrap.dedent(
    """
    import json, select, socket, sys
    ip, n, rounds, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    socks = []
    for i in range(n):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.connect((ip, 5000))
        socks.append(s)
    sent = received = 0
    for r in range(rounds):
        want = {}
        for i, s in enumerate(socks):
            body = bytearray(b"q" * 292)
            body[20:23] = tags.split(",")[i % len(tags.split(","))].encode()
            body[:8] = (r * 100000 + i).to_bytes(8, "big")
            s.send(bytes(body))
            want[s] = bytes(body)
            sent += 1
        pending = set(socks)
        while pending:
            ready = select.select(list(pending), [], [], 1.0)[0]
            if not ready:
                break
            for s in ready:
                try:
                    data = s.recv(4096)
                except OSError:  # ICMP port unreachable: the reply came from the wrong port
                    pending.discard(s)
                    continue
                if data == want[s]:
                    received += 1
                pending.discard(s)
    print(json.dumps({"sent": sent, "received": received}), flush=True)
    """
)

LISTEN = textwrap.dedent(
    """
    import json, socket, sys
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", int(sys.argv[1])))
    s.settimeout(3)
    print("ready", flush=True)
    seen = []
    try:
        while True:
            data, peer = s.recvfrom(4096)
            seen.append(peer[1])
    except socket.timeout:
        pass
    print(json.dumps(seen), flush=True)
    """
)

SEND_FROM = textwrap.dedent(
    """
    import socket, sys
    ip, sport, dport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", sport))
    for i in range(n):
        s.sendto(b"third party %d" % i, (ip, dport))
    """
)


def py(ns: str, script: str, *args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        **kw,
    )


class Echo:
    """Echo backends on `ports` in netns `ns` (until stop())."""

    def __init__(self, ns: str, ports: list[int]) -> None:
        self.proc = py(ns, ECHO, ",".join(map(str, ports)))
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        self.proc.communicate("stop\n", timeout=30)


def clients(ns: str, ip: str, n: int, rounds: int, tags: str) -> dict[str, int]:
    """n connected UDP clients of ip:5000, `rounds` requests each: sent and replies got."""
    p = py(ns, CLIENTS, ip, str(n), str(rounds), tags)
    out, _ = p.communicate(timeout=120)
    doc: dict[str, int] = json.loads(out)
    return doc


def third_party(recv_ns: str, send_ns: str, ip: str, sport: int, n: int) -> list[int]:
    """Source ports a listener on port 7777 in recv_ns sees for n datagrams sent to ip:7777
    from port `sport` in send_ns."""
    listener = py(recv_ns, LISTEN, "7777")
    assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
    argv = [sys.executable, "-c", SEND_FROM, ip, str(sport), "7777", str(n)]
    subprocess.run(["ip", "netns", "exec", send_ns, *argv], check=True, timeout=30)
    out, _ = listener.communicate(timeout=30)
    seen: list[int] = json.loads(out)
    return seen
