"""The TC hook under the engine tests (issue 14): idempotency, in-place map updates, atomic
replacement with zero loss, kill -9 convergence, hook changes, other TC programs left
alone, detach; each both ways a TC program is attached (tcx, and the clsact + cls_bpf
fallback for kernels without tcx, forced with MPLEXCTL_TC_ATTACH=clsact)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest

from mplexctl import constants as C
from mplexctl.backend import bpfsys, tchook
from mplexctl.engine.probe import TcHooks, tc_hooks
from tests.support.frames import tagged_udp as udp_frame
from tests.support.hosts import Host, Wire
from tests.support.netns import in_netns
from tests.support.traffic import Stream

pytestmark = pytest.mark.kernel

MORE = (
    "  - name: other\n    protocol: tcp\n    port: 6000\n"
    "    payload_length: [{min: 10, max: 20}]\n    tag: {offset: 0, length: 1}\n"
    '    routes: {"a": 6001}\n'
)
TC_PASS = C.TC_ACT_UNSPEC & 0xFFFFFFFF


def hooks(host: Host) -> TcHooks:
    with in_netns(host.ns):
        return tc_hooks(socket.if_nametoindex(host.xdp))


def tc_ids(host: Host, direction: str) -> list[int]:
    """Every program at a TC hook of the interface, in the order they run (tcx, then clsact)."""
    with in_netns(host.ns):
        return [a.prog_id for a in tchook.query(socket.if_nametoindex(host.xdp), direction)]


@pytest.fixture(params=["tcx", "clsact"])
def via(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How mplexctl attaches TC programs in this test (every mplexctl run inherits it)."""
    monkeypatch.setenv(tchook.ENV, request.param)
    return str(request.param)


def route_of_tc(prog_id: int, tag: bytes) -> int | None:
    """Destination port the TC program gives a datagram with `tag` (None: dropped)."""
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        run = bpfsys.prog_test_run(fd, udp_frame(tag))
    finally:
        import os

        os.close(fd)
    return int.from_bytes(run.data[36:38], "big") if run.retval == TC_PASS else None


FOREIGN_TC = textwrap.dedent(
    """
    import socket, sys
    from bcc import BPF
    from pyroute2 import IPRoute
    sys.path.insert(0, ROOT)
    from mplexctl.backend import tcx
    b = BPF(text="int other_tc(struct __sk_buff *skb) { return -1; }")
    fn = b.load_func("other_tc", BPF.SCHED_CLS)
    index = socket.if_nametoindex(IFACE)
    if VIA == "tcx":
        tcx.attach(index, IFACE, fn.fd, "ingress")
    else:  # a cls_bpf filter at priority 1, the one mplex would take first
        with IPRoute() as ipr:
            ipr.tc("add", "clsact", index)
            ipr.tc("add-filter", "bpf", index, 1, fd=fn.fd, name="other", prio=1,
                   parent=0xFFFFFFF2, direct_action=True)
    """
)


def attach_foreign_tc(host: Host, via: str) -> int:
    """Someone else's TC program at the ingress hook (tcx, or a clsact filter); its id."""
    from tests.support.hosts import ROOT

    code = f"IFACE = {host.xdp!r}\nROOT = {str(ROOT)!r}\nVIA = {via!r}\n" + FOREIGN_TC
    subprocess.run(
        ["ip", "netns", "exec", host.ns, sys.executable, "-c", code],
        check=True,
        capture_output=True,
    )
    (prog_id,) = tc_ids(host, "ingress")
    return prog_id


def test_tc_apply_noop_in_place_swap_detach(host: Host, via: str) -> None:
    cfg = host.config(hook="tc")
    first = host.apply(cfg)
    assert {c["action"] for c in first["plan"]} == {"attach"} and first["compiles"] == 1
    prog = hooks(host).ingress
    assert hooks(host).ingress_via == via
    assert f"tc mode ({via})" in host.cli("status", host.xdp).stdout
    assert prog and host.status()["mode"] == "tc" and host.status()["prog_id"] == prog
    assert route_of_tc(prog, b"601") == 5002
    again = host.apply(cfg)
    assert again["changed"] is False and again["compiles"] == 0
    # A route change is written in place: same program, new port.
    moved = host.apply(host.config({"600": 5001, "601": 5009, "602": 5003}, hook="tc"))
    assert [c["action"] for c in moved["plan"]] == ["route"] and moved["compiles"] == 0
    assert hooks(host).ingress == prog and route_of_tc(prog, b"601") == 5009
    # A new service: a new program replaces the old one atomically (tcx or filter replace).
    swapped = host.apply(host.config(hook="tc", more_services=MORE))
    assert "swap" in [c["action"] for c in swapped["plan"]] and swapped["compiles"] == 1
    new = hooks(host).ingress
    assert new and new != prog and tc_ids(host, "ingress") == [new]
    assert hooks(host).ingress_via == via
    assert host.cli("diff", str(host.config(hook="tc", more_services=MORE))).returncode == 0
    det = host.cli("detach", host.xdp)
    assert det.returncode == 0, det.stderr
    assert tc_ids(host, "ingress") == [] and tc_ids(host, "egress") == []


@pytest.mark.parametrize(
    ("change", "expect_action"),
    [
        ({"routes": {"600": 5001, "601": 5009, "602": 5003}}, "route"),
        ({"more_services": MORE, "routes": {"600": 5001, "601": 5009}}, "swap"),
    ],
    ids=["route-in-place", "program-swap"],
)
def test_tc_zero_loss_during_apply(
    wire: Wire, via: str, change: dict[str, object], expect_action: str
) -> None:
    host = wire.host
    host.apply(host.config(hook="tc"))
    stream = Stream(host.ns, wire.sender_ns, wire.dst_ip, [5000, 5002, 5009])
    stream.start("601", 100_000, 3000)
    time.sleep(0.6)
    res = host.apply(host.config(hook="tc", **change))  # type: ignore[arg-type]
    assert res["plan"][0]["action"] == expect_action
    time.sleep(0.6)
    doc = stream.finish()
    counts = doc["counts"]
    assert isinstance(counts, dict)
    assert counts["5000"] == 0
    assert counts["5002"] > 0 and counts["5009"] > 0, doc
    assert counts["5002"] + counts["5009"] == doc["sent"] == doc["unique"], doc


def test_foreign_tc_program_left_alone(wire: Wire, via: str) -> None:
    host = wire.host
    foreign = attach_foreign_tc(host, via)
    host.apply(host.config(hook="tc"))
    ours = hooks(host).ingress
    assert tc_ids(host, "ingress") == [foreign, ours]  # after it (tcx: appended; clsact:
    assert hooks(host).ingress_via == via  # the next free priority), it stays first
    # Traffic still goes through both (the foreign program hands every frame on).
    stream = Stream(host.ns, wire.sender_ns, wire.dst_ip, [5000, 5002])
    stream.start("601", 300, 3000)
    time.sleep(0.5)
    doc = stream.finish()
    assert doc["counts"] == {"5000": 0, "5002": doc["sent"]}, doc
    host.apply(host.config(hook="tc", more_services=MORE))  # a swap replaces ours only
    assert tc_ids(host, "ingress")[0] == foreign and len(tc_ids(host, "ingress")) == 2
    assert host.cli("detach").returncode == 0
    assert tc_ids(host, "ingress") == [foreign]


@pytest.mark.parametrize("point", ["after-load", "after-fill", "after-attach"])
def test_tc_kill9_then_reapply_converges(host: Host, via: str, point: str) -> None:
    host.apply(host.config(hook="tc"))
    old = hooks(host).ingress
    cfg = host.config(hook="tc", reply="restore", more_services=MORE)
    r = host.cli("apply", str(cfg), env={"MPLEXCTL_FAULT_KILL_AT": point})
    assert r.returncode == -9
    # Before the switch the old program is in force; after it the new one (each atomic).
    assert (hooks(host).ingress == old) == (point != "after-attach")
    res = host.apply(cfg)
    assert res["verified"] and host.cli("diff", str(cfg)).returncode == 0
    now = hooks(host)
    assert now.ingress != old and now.egress
    assert tc_ids(host, "ingress") == [now.ingress] and tc_ids(host, "egress") == [now.egress]
    assert now.ingress_via == now.egress_via == via
    assert host.apply(cfg)["changed"] is False


def test_hook_change_xdp_to_tc_and_back(host: Host, via: str) -> None:
    host.apply(host.config())
    xdp_prog = host.status()["prog_id"]
    res = host.apply(host.config(hook="tc"))
    actions = {c["action"] for c in res["plan"]}
    assert "hook-change" in actions, res["plan"]
    st = host.status()
    assert st["mode"] == "tc" and st["prog_id"] == hooks(host).ingress != xdp_prog
    with in_netns(host.ns):
        from mplexctl.backend import netlink

        link = netlink.get_link(host.xdp)
        assert link is not None and link.prog_id == 0  # the XDP program is gone
    back = host.apply(host.config())
    assert "hook-change" in {c["action"] for c in back["plan"]}
    assert hooks(host) == TcHooks() and host.status()["mode"] in ("native", "generic")
    assert host.apply(host.config())["changed"] is False


def test_an_attachment_keeps_its_way(host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program attached through clsact is replaced and detached there, whatever new
    attachments would use now (a kernel upgrade, a changed setting): it never moves."""
    monkeypatch.setenv(tchook.ENV, "clsact")
    host.apply(host.config(hook="tc"))
    old = hooks(host)
    assert old.ingress_via == "clsact"
    monkeypatch.setenv(tchook.ENV, "tcx")
    res = host.apply(host.config(hook="tc", reply="restore", more_services=MORE))
    assert "swap" in [c["action"] for c in res["plan"]] and res["verified"]
    now = hooks(host)
    assert now.ingress != old.ingress and now.ingress_via == "clsact"
    assert now.egress_via == "tcx"  # a new attachment: the way the setting says
    with in_netns(host.ns):
        from mplexctl.backend import tcx

        assert tcx.query(socket.if_nametoindex(host.xdp), "ingress") == []
    assert host.cli("detach", host.xdp).returncode == 0
    assert tc_ids(host, "ingress") == [] and tc_ids(host, "egress") == []


def test_a_bad_attach_setting_changes_nothing(host: Host) -> None:
    host.apply(host.config(hook="tc"))
    before = hooks(host)
    r = host.cli(
        "apply",
        str(host.config(hook="tc", more_services=MORE)),
        env={tchook.ENV: "legacy"},
    )
    assert r.returncode == 2 and "MPLEXCTL_TC_ATTACH='legacy'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert hooks(host) == before


def test_a_legacy_ingress_qdisc_carries_hook_tc_but_not_the_reply_path(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where someone keeps a legacy `ingress` qdisc (no clsact can be added beside it), the
    TC ingress program goes in a filter there and is found again; the reply path needs an
    egress hook, so it is refused and the previous configuration stays in force."""
    monkeypatch.setenv(tchook.ENV, "clsact")
    subprocess.run(["tc", "-n", host.ns, "qdisc", "add", "dev", host.xdp, "ingress"], check=True)
    cfg = host.config(hook="tc")
    host.apply(cfg)
    before = hooks(host)
    assert before.ingress and before.ingress_via == "clsact"
    assert host.apply(cfg)["changed"] is False
    res = host.apply(host.config(hook="tc", reply="restore"), ok=False)
    assert res["_rc"] != 0
    assert "legacy ingress qdisc" in res["_stderr"] and "Traceback" not in res["_stderr"]
    assert hooks(host) == before and tc_ids(host, "egress") == []
    assert host.apply(cfg)["changed"] is False


@pytest.mark.parametrize("hook", ["tc", "xdp"])
def test_the_reply_path_on_a_legacy_ingress_qdisc_is_refused_before_anything_changes(
    host: Host, monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    """The refusal comes before the new program is compiled and before any hook is switched
    (not by undoing an ingress switch): a crash point after the load is never reached."""
    monkeypatch.setenv(tchook.ENV, "clsact")
    subprocess.run(["tc", "-n", host.ns, "qdisc", "add", "dev", host.xdp, "ingress"], check=True)
    host.apply(host.config(hook=hook))
    r = host.cli(
        "apply",
        str(host.config(hook=hook, reply="restore", more_services=MORE)),
        env={"MPLEXCTL_FAULT_KILL_AT": "after-load"},
    )
    assert r.returncode not in (0, -9), (r.returncode, r.stderr)
    assert "legacy ingress qdisc" in r.stderr and "Traceback" not in r.stderr
    assert tc_ids(host, "egress") == []
    assert host.apply(host.config(hook=hook))["changed"] is False


def test_clsact_kill9_between_qdisc_and_filter_converges(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after the clsact qdisc is added and before mplex's filter: the next apply adds
    exactly one filter per hook (it takes the qdisc as it finds it), and detach removes every
    filter of mplex's (the qdisc stays, as the README says)."""
    monkeypatch.setenv(tchook.ENV, "clsact")
    cfg = host.config(hook="tc", reply="restore")
    r = host.cli("apply", str(cfg), env={"MPLEXCTL_FAULT_KILL_AT": "after-qdisc"})
    assert r.returncode == -9, r.stderr
    qdiscs = subprocess.run(
        ["tc", "-n", host.ns, "qdisc", "show", "dev", host.xdp], check=True, capture_output=True
    ).stdout
    assert b"clsact" in qdiscs and tc_ids(host, "ingress") == tc_ids(host, "egress") == []
    assert host.apply(cfg)["verified"]
    now = hooks(host)
    assert tc_ids(host, "ingress") == [now.ingress] and tc_ids(host, "egress") == [now.egress]
    assert host.apply(cfg)["changed"] is False
    assert host.cli("detach", host.xdp).returncode == 0
    assert tc_ids(host, "ingress") == tc_ids(host, "egress") == []


def test_detach_removes_mplex_attached_both_ways(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mplex's program at one hook twice, through clsact and through tcx (attached a second
    time by hand, or left from a way that changed): detach leaves none of mplex's there."""
    monkeypatch.setenv(tchook.ENV, "clsact")
    host.apply(host.config(hook="tc"))
    prog = hooks(host).ingress
    with in_netns(host.ns):
        from mplexctl.backend import tcx

        fd = bpfsys.prog_fd_by_id(prog)
        try:
            tcx.attach(socket.if_nametoindex(host.xdp), host.xdp, fd, "ingress")
        finally:
            import os

            os.close(fd)
    assert tc_ids(host, "ingress") == [prog, prog]
    r = host.cli("detach", host.xdp)
    assert r.returncode == 0, r.stderr
    assert tc_ids(host, "ingress") == [], host.cli("status", host.xdp).stdout
