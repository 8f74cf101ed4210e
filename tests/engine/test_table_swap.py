"""A route table swap keeps the counters of the routes it keeps, and only of those."""

from __future__ import annotations

from pathlib import Path

import pytest

from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.engine.probe import probe
from tests.support.hosts import Host
from tests.support.netns import in_netns

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("accel")]


def _config(host: Host, length: int, routes: dict[str, int]) -> Path:
    text = (
        f"version: 1\ninterfaces: [{{name: {host.xdp}}}]\nservices:\n"
        "  - name: telemetry\n    protocol: udp\n    port: 5000\n"
        "    payload_length: [{min: 290, max: 294}]\n"
        f"    tag: {{offset: 20, length: {length}}}\n"
        "    routes: {" + ", ".join(f'"{k}": {v}' for k, v in routes.items()) + "}\n"
    )
    path = host.tmp / f"len{length}-{len(routes)}.yaml"
    path.write_text(text)
    return path


def _count(host: Host, tag: bytes, packets: int) -> None:
    """Give route `tag` `packets` packets on every CPU (as traffic would)."""
    with in_netns(host.ns):
        prog = probe().interfaces[host.xdp].program
        assert prog is not None
        pm = ProgramMaps.open(prog.prog_id)
        assert pm is not None
        try:
            key = layout.route_key(0, prog.route_slot[0], tag)
            values = pm.route_values(key)
            assert values is not None
            port = layout.route_port(values[0])
            pm.write_routes(
                [(key, [layout.route_value(port, packets, 100 * packets)] * len(values))]
            )
        finally:
            pm.close()


def _packets(host: Host) -> dict[str, int]:
    routes = host.status()["services"]["telemetry"]["routes"]
    return {tag: r["packets"] for tag, r in routes.items()}


def test_table_swap_keeps_counters_of_kept_routes_only(host: Host) -> None:
    host.apply(_config(host, 3, {"abc": 5001, "abd": 5002, "abe": 5003}))
    _count(host, b"abc", 7)
    _count(host, b"abd", 9)
    # Two routes change (a table swap): "abc" kept (re-targeted), "abd" dropped, "xyz" added.
    doc = host.apply(_config(host, 3, {"abc": 6001, "abe": 5003, "xyz": 6002}))
    assert {c["action"] for c in doc["plan"]} == {"table"}
    ncpu = _packets(host)["abc"] // 7
    assert ncpu >= 1 and _packets(host) == {"abc": 7 * ncpu, "abe": 0, "xyz": 0}
    # tag.length shrinks: every route is a new one, even "xy" (a prefix of counted "xyz").
    _count(host, b"xyz", 5)
    doc = host.apply(_config(host, 2, {"ab": 6001, "xy": 6002}))
    assert "table" in {c["action"] for c in doc["plan"]}
    assert _packets(host) == {"ab": 0, "xy": 0}


def test_full_table_change_at_the_routes_limit(host: Host) -> None:
    """Every route of a table at limits.routes re-targeted, twice: the new table is placed
    beside the live one (a table swap) within the probe bound, whatever the seeds."""
    n = 4096
    head = f"limits: {{routes: {n}}}\n"
    first = {f"{i:03x}": 5001 + i % 7 for i in range(n)}
    second = {tag: port + 1 for tag, port in first.items()}
    host.apply(host.config(first, head=head))
    for routes in (second, first):
        doc = host.apply(host.config(routes, head=head))
        assert {c["action"] for c in doc["plan"]} == {"table"}, doc["plan"]
        live = host.status()["services"]["telemetry"]["routes"]
        assert {tag: r["port"] for tag, r in live.items()} == routes
