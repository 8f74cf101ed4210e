"""The verifying re-probe confirms in-place route writes in bulk, and only when the route map
holds exactly what the plan wrote: any other difference is decoded and planned again."""

from __future__ import annotations

import pytest

from mplexctl.accel.reprobe import expected as route_writes
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import compile_config
from mplexctl.config import load_config
from mplexctl.engine.plan import plan
from mplexctl.engine.probe import probe
from tests.support.hosts import Host
from tests.support.netns import in_netns

pytestmark = pytest.mark.kernel


ROUTES = {"600": 5001, "601": 5002, "602": 5003}


def _write(prog_id: int, svc: int, slot: int, tag: bytes, port: int) -> None:
    pm = ProgramMaps.open(prog_id)
    assert pm is not None
    try:
        pm.write_routes([(layout.route_key(svc, slot, tag), layout.route_value(port))])
    finally:
        pm.close()


def test_reprobe_confirms_exactly_the_planned_writes(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    host.apply(host.config(ROUTES))
    build = compile_config(load_config(str(host.config({**ROUTES, "600": 5101}))))
    want = build.services[0].routes
    with in_netns(host.ns):
        before = probe()
        p = plan(build, before)
        assert p.program is not None
        assert [op.kind for op in p.program.service_ops] == ["route"]
        writes = route_writes(p, before, build)
        prog_id = before.interfaces[host.xdp].prog_id
        assert list(writes) == [prog_id] and len(writes[prog_id].writes) == 1
        prog = before.interfaces[host.xdp].program
        assert prog is not None
        slot = prog.route_slot[0]

        # The apply's write, by hand: the re-probe confirms it without decoding.
        _write(prog.prog_id, 0, slot, b"600", 5101)
        after = probe(expect=writes)
        svc = after.interfaces[host.xdp].program.services[0]  # type: ignore[union-attr]
        assert svc.routes is want
        assert not plan(build, after).program.service_ops  # type: ignore[union-attr]
        assert probe().interfaces[host.xdp].program.services[0].routes == want  # type: ignore[union-attr]

        # Accelerators off: nothing expected, and the same writes are decoded.
        with monkeypatch.context() as m:
            m.setenv("MPLEXCTL_ACCEL", "0")
            assert route_writes(p, before, build) == {}
            off = probe(expect=writes).interfaces[host.xdp].program.services[0]  # type: ignore[union-attr]
            assert off.routes is not want and off.routes == want

        # Something else changed too (drift during the apply): decoded, and planned again.
        _write(prog.prog_id, 0, slot, b"601", 7777)
        drifted = probe(expect=writes)
        svc = drifted.interfaces[host.xdp].program.services[0]  # type: ignore[union-attr]
        assert svc.routes is not want and svc.routes[b"601"] == 7777
        again = plan(build, drifted).program
        assert again is not None
        assert [(op.kind, op.tags) for op in again.service_ops] == [("route", (b"601",))]

        # The planned route holding another port than planned: not confirmed either.
        _write(prog.prog_id, 0, slot, b"601", 5002)
        _write(prog.prog_id, 0, slot, b"600", 5102)
        other = probe(expect=writes)
        svc = other.interfaces[host.xdp].program.services[0]  # type: ignore[union-attr]
        assert svc.routes is not want and svc.routes[b"600"] == 5102


def test_added_or_removed_routes_are_decoded(host: Host) -> None:
    host.apply(host.config(ROUTES))
    removed = compile_config(load_config(str(host.config({"600": 5001, "601": 5002}))))
    added = compile_config(load_config(str(host.config({**ROUTES, "603": 5004}))))
    with in_netns(host.ns):
        before = probe()
        assert route_writes(plan(removed, before), before, removed) == {}
        writes = route_writes(plan(added, before), before, added)
        prog = before.interfaces[host.xdp].program
        assert prog is not None
        _write(prog.prog_id, 0, prog.route_slot[0], b"603", 5004)  # a new entry: new keys
        svc = probe(expect=writes).interfaces[host.xdp].program.services[0]  # type: ignore[union-attr]
        want = added.services[0].routes
        assert svc.routes is not want and svc.routes == want
