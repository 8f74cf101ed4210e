"""Zero loss while apply switches configs: a route change and a program swap, under a stream."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mplexctl.compiler.build import compile_config
from mplexctl.config import load_config
from tests.support.hosts import Wire
from tests.support.netns import in_netns
from tests.support.previous_release import attach_previous, attach_v2
from tests.support.traffic import Stream

pytestmark = pytest.mark.kernel

LIMIT, PPS = 100_000, 3000  # a stream valid under the old and the new config
MORE = (
    "  - name: other\n    protocol: tcp\n    port: 6000\n"
    "    payload_length: [{min: 10, max: 20}]\n    tag: {offset: 0, length: 1}\n"
    '    routes: {"a": 6001}\n'
)


@pytest.mark.parametrize(
    ("change", "expect_action"),
    [
        ({"routes": {"600": 5001, "601": 5009, "602": 5003}}, "route"),
        ({"routes": {"601": 5009, "603": 5004}, "window": (280, 300)}, "table"),
        ({"more_services": MORE, "routes": {"600": 5001, "601": 5009}}, "swap"),
    ],
    ids=["route-in-place", "table-swap", "program-swap"],
)
def test_zero_loss_during_apply(wire: Wire, change: dict[str, object], expect_action: str) -> None:
    host = wire.host
    host.apply(host.config())
    stream = Stream(host.ns, wire.sender_ns, wire.dst_ip, [5000, 5002, 5009])
    stream.start("601", LIMIT, PPS)
    time.sleep(0.6)
    res = host.apply(host.config(**change))  # type: ignore[arg-type]
    assert res["plan"][0]["action"] == expect_action
    time.sleep(0.6)  # traffic after the switch too
    doc = stream.finish()
    counts = doc["counts"]
    assert isinstance(counts, dict)
    assert counts["5000"] == 0  # every packet was routed, none passed to the service port
    assert counts["5002"] > 0 and counts["5009"] > 0, doc  # the switch happened mid-stream
    assert counts["5002"] + counts["5009"] == doc["sent"] == doc["unique"], doc


def _swapped_under_stream(wire: Wire, attach_old: Callable[..., int]) -> None:
    """An older release's program (attach_old) on host.xdp, replaced by the next apply while
    a stream runs: not one datagram lost, and the program is another one afterwards."""
    host = wire.host
    cfg = host.config()
    build = compile_config(load_config(str(cfg)))
    with in_netns(host.ns):
        old = attach_old(build, host.xdp, "native")
    diff = host.cli("diff", str(cfg))
    assert diff.returncode == 1 and "swap" in diff.stdout, diff.stdout + diff.stderr
    stream = Stream(host.ns, wire.sender_ns, wire.dst_ip, [5000, 5002])
    stream.start("601", LIMIT, PPS)
    time.sleep(0.6)
    res = host.apply(cfg)
    assert res["plan"][0]["action"] == "swap" and res["compiles"] == 1
    time.sleep(0.6)
    doc = stream.finish()
    counts = doc["counts"]
    assert isinstance(counts, dict)
    assert counts["5000"] == 0 and counts["5002"] == doc["sent"] == doc["unique"], doc
    assert host.status()["prog_id"] != old
    assert host.cli("diff", str(cfg)).returncode == 0


def test_zero_loss_while_a_previous_release_program_is_replaced(wire: Wire) -> None:
    """Migration: the previous release's per-interface program, under a stream, is swapped
    for the shared program by the next apply without losing a datagram."""
    _swapped_under_stream(wire, attach_previous)


def test_zero_loss_while_routes_are_added_and_deleted_in_place(wire: Wire) -> None:
    """Other routes added (a free slot on the way of the streamed tag's probe path, maybe),
    deleted (a tombstone) and added back, each in place: the stream never misses a datagram."""
    host = wire.host
    host.apply(host.config())
    stream = Stream(host.ns, wire.sender_ns, wire.dst_ip, [5000, 5002])
    stream.start("601", LIMIT, PPS)
    time.sleep(0.4)
    steps = [
        {"600": 5001, "601": 5002, "602": 5003, "603": 5004},  # add
        {"601": 5002, "602": 5003, "603": 5004},  # delete
        {"600": 5007, "601": 5002, "602": 5003, "603": 5004},  # add back, another port
    ]
    for routes in steps:
        res = host.apply(host.config(routes))
        assert res["plan"][0]["action"] == "route"
        time.sleep(0.3)
    doc = stream.finish()
    counts = doc["counts"]
    assert isinstance(counts, dict)
    assert counts["5000"] == 0 and counts["5002"] == doc["sent"] == doc["unique"], doc


def test_zero_loss_while_a_hashed_route_program_is_replaced(wire: Wire) -> None:
    """Upgrade: the program of the release before the call-free lookup (layout 2, routes in a
    per-CPU hash), under a stream, is read by diff and swapped for the current one by the next
    apply without losing a datagram."""
    _swapped_under_stream(wire, attach_v2)
