"""The reply path (`reply: restore`) and the TC hook against the kernel: connected UDP
clients in one netns, echo backends on the route ports where mplexctl runs (issue 14)."""

from __future__ import annotations

import socket

import pytest

from mplexctl.backend import tchook
from mplexctl.engine.probe import tc_hooks
from tests.engine.replylab import V6_HOST, V6_SENDER, Echo, clients, third_party
from tests.support.hosts import Wire
from tests.support.netns import call_in_netns, in_netns, sh

pytestmark = pytest.mark.kernel

ROUTES = {"600": 5001, "601": 5002}
TAGS = "600,601"


def _v6(wire: Wire) -> None:
    host = wire.host
    sh("ip", "-n", host.ns, "addr", "add", f"{V6_HOST}/64", "dev", host.xdp, "nodad")
    sh("ip", "-n", wire.sender_ns, "addr", "add", f"{V6_SENDER}/64", "dev", host.peer, "nodad")
    sh("ip", "-n", host.ns, "link", "set", "lo", "up")


@pytest.mark.parametrize(
    ("hook", "via"), [("xdp", "auto"), ("tc", "auto"), ("xdp", "clsact"), ("tc", "clsact")]
)
def test_connected_clients_get_every_reply_with_restore(
    wire: Wire, hook: str, via: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """via clsact: the reply path (and the TC ingress) attached without tcx."""
    monkeypatch.setenv(tchook.ENV, via)
    host = wire.host
    _v6(wire)
    res = host.apply(host.config(ROUTES, hook=hook, reply="restore"))
    assert res["_rc"] == 0
    echo = Echo(host.ns, [5001, 5002])
    try:
        v4 = clients(wire.sender_ns, wire.dst_ip, 20, 3, TAGS)
        v6 = clients(wire.sender_ns, V6_HOST, 20, 3, TAGS)
    finally:
        echo.stop()
    assert v4 == {"sent": 60, "received": 60}
    assert v6 == {"sent": 60, "received": 60}
    svc = host.status()["services"]["telemetry"]
    assert svc["verdicts"]["rewrite"]["packets"] == 120
    assert svc["replies_restored"]["packets"] == 120
    text = host.cli("status", host.xdp).stdout
    assert "replies restored: 120 packets" in text, text
    prom = host.cli("status", "--prometheus", host.xdp).stdout
    assert (
        f'mplex_replies_restored_packets_total{{interface="{host.xdp}",service="telemetry"}} 120'
        in prom
    )
    # The second apply changes nothing and compiles nothing.
    again = host.apply(host.config(ROUTES, hook=hook, reply="restore"))
    assert again["changed"] is False and again["plan"] == []
    with in_netns(host.ns):
        hooks = tc_hooks(socket.if_nametoindex(host.xdp))
    assert hooks.egress_via == (tchook.preferred() if via == "auto" else via)


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_without_restore_no_reply_arrives(wire: Wire, hook: str) -> None:
    host = wire.host
    _v6(wire)
    host.apply(host.config(ROUTES, hook=hook))
    echo = Echo(host.ns, [5001, 5002])
    try:
        v4 = clients(wire.sender_ns, wire.dst_ip, 5, 2, TAGS)
        v6 = clients(wire.sender_ns, V6_HOST, 5, 2, TAGS)
    finally:
        echo.stop()
    assert v4 == {"sent": 10, "received": 0}
    assert v6 == {"sent": 10, "received": 0}


def test_many_clients_at_once_and_third_parties_untouched(wire: Wire) -> None:
    """200 connected clients (200 flows in the table) all get their replies; a datagram from
    a backend port to an address and port that sent no request keeps its source port."""
    host = wire.host
    _v6(wire)
    host.apply(host.config(ROUTES, hook="tc", reply="restore"))
    echo = Echo(host.ns, [5001, 5002])
    try:
        many = clients(wire.sender_ns, wire.dst_ip, 200, 2, TAGS)
    finally:
        echo.stop()
    assert many == {"sent": 400, "received": 400}
    assert third_party(wire.sender_ns, host.ns, wire.src_ip, 5001, 5) == [5001] * 5
    assert third_party(wire.sender_ns, host.ns, V6_SENDER, 5002, 5) == [5002] * 5


def test_restore_turned_off_detaches_the_reply_path(wire: Wire) -> None:
    host = wire.host
    host.apply(host.config(ROUTES, hook="tc", reply="restore"))
    res = host.apply(host.config(ROUTES, hook="tc"))
    assert any(c["action"] == "reply-path" for c in res["plan"]), res["plan"]
    with in_netns(host.ns):
        hooks = tc_hooks(socket.if_nametoindex(host.xdp))
    assert hooks.ingress and not hooks.egress


def _tcp_connect(ns: str, ip: str, port: int, timeout: float) -> str:
    """Outcome of a TCP connect() from netns ns: "connected", "timeout" or "refused"."""

    def make() -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    s = call_in_netns(ns, make)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    finally:
        s.close()
    return "connected"


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_tcp_service_drops_the_handshake(wire: Wire, hook: str) -> None:
    """Why `reply: restore` is refused on a tcp service: the SYN carries no payload, falls
    outside every window and is dropped, so connect() to the service port never completes
    (with a listener on it, which accepts before the program is attached) and no reply
    exists to restore. The file that asks for it is refused and changes nothing."""
    host = wire.host
    udp = host.config(ROUTES, hook=hook).read_text()
    tcp = host.tmp / "tcp.yaml"
    tcp.write_text(udp.replace("protocol: udp", "protocol: tcp"))
    restoring = host.tmp / "tcp-restore.yaml"
    restoring.write_text(
        tcp.read_text().replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    )

    def listen() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("", 5000))
        s.listen(8)
        return s

    listener = call_in_netns(host.ns, listen)
    try:
        assert _tcp_connect(wire.sender_ns, wire.dst_ip, 5000, 3.0) == "connected"
        refused = host.apply(restoring, ok=False)
        assert refused["_rc"] == 2, refused
        assert "reply: restore works for udp services only" in refused["msg"], refused
        assert host.cli("status", "--json", host.xdp).returncode == 0
        assert host.status()["owner"] == "none"
        host.apply(tcp)
        assert _tcp_connect(wire.sender_ns, wire.dst_ip, 5000, 2.5) == "timeout"
    finally:
        listener.close()
    verdicts = host.status()["services"]["telemetry"]["verdicts"]
    # The SYN and its retransmission(s) (one after 1 s, more on a slow machine).
    assert verdicts["drop_length"]["packets"] >= 2, verdicts
    assert verdicts.get("rewrite", {"packets": 0})["packets"] == 0, verdicts
