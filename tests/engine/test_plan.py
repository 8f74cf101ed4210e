"""The planner is pure: desired Build vs a LiveState built in memory."""

from __future__ import annotations

import dataclasses

import pytest

from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import parse_config
from mplexctl.engine.plan import plan, virtual_host, virtual_live
from mplexctl.engine.state import InterfaceState, LiveState
from tests.samples import BASE

pytestmark = pytest.mark.unit


def build(text: str = BASE) -> Build:
    return compile_config(parse_config(text, "t.yaml"))


def kinds(text_new: str, text_old: str = BASE) -> list[tuple[str, str]]:
    p = plan(build(text_new), virtual_host(build(text_old), build(text_new)))
    return [(c.action, c.detail) for c in p.changes]


def test_same_state_is_an_empty_plan() -> None:
    p = plan(build(), virtual_live(build()))
    assert p.empty and p.changes == ()


def test_one_route_change_is_in_place() -> None:
    assert kinds(BASE.replace('"600": 5001', '"600": 5009')) == [
        ("route", 'service telemetry: route "600": 5001 -> 5009')
    ]


def test_route_added_and_removed_are_in_place_when_single() -> None:
    assert kinds(BASE.replace(', "602": 5003', "")) == [
        ("route", 'service telemetry: route "602" -> 5003 removed')
    ]
    assert kinds(BASE.replace('"602": 5003}', '"602": 5003, "603": 5004}')) == [
        ("route", 'service telemetry: route "603" -> 5004 added')
    ]


def test_several_route_changes_swap_the_table() -> None:
    new = BASE.replace('"600": 5001', '"600": 5009').replace('"601": 5002', '"601": 5008')
    assert {k for k, _ in kinds(new)} == {"table"}
    assert len(kinds(new)) == 2


def test_window_change_is_a_row_update() -> None:
    assert kinds(BASE.replace("max: 294", "max: 296")) == [
        ("row", "service telemetry: windows 290..294 -> 290..296")
    ]


def test_window_and_route_change_together_swap_the_table() -> None:
    new = BASE.replace("max: 294", "max: 296").replace('"600": 5001', '"600": 5009')
    assert {k for k, _ in kinds(new)} == {"table"}


def test_new_service_swaps_the_program() -> None:
    new = BASE + BASE.split("services:\n")[1].replace("telemetry", "b").replace("5000", "6000")
    actions = kinds(new)
    assert actions[0][0] == "swap"
    assert ("swap", "service b: added (udp/6000, 3 routes)") in actions


def test_interface_not_in_file_is_detached_and_new_one_attached() -> None:
    new = BASE.replace("name: eth0", "name: eth1")
    acts = kinds(new)
    assert ("detach", "detach mplex: not in the file") in acts  # diff OLD NEW: no kernel id
    assert any(a == "attach" for a, _ in acts)


def test_foreign_program_is_refused_unless_forced() -> None:
    live = LiveState({"eth0": InterfaceState("eth0", 2, "native", 77, "other_xdp")})
    p = plan(build(), live)
    assert [s.prog_id for s in p.refused] == [77] and p.empty
    forced = plan(build(), live, force=True)
    assert [c.action for c in forced.changes] == ["replace-foreign"]


def test_missing_interface_is_reported() -> None:
    assert plan(build(), LiveState({})).missing == ("eth0",)


def test_mode_change_and_auto() -> None:
    live = virtual_live(build())
    generic = LiveState({"eth0": dataclasses.replace(live.interfaces["eth0"], mode="generic")})
    assert plan(build(), generic).empty  # auto accepts whatever mode it got
    native = build(BASE.replace("name: eth0", "name: eth0, xdp_mode: native"))
    assert plan(native, generic).changes[0].action == "mode-change"


def test_stray_routes_from_an_interrupted_apply_are_cleaned() -> None:
    live = virtual_live(build())
    prog = dataclasses.replace(live.interfaces["eth0"].program, stray_routes=3)  # type: ignore[arg-type]
    state = dataclasses.replace(live.interfaces["eth0"], program=prog)
    p = plan(build(), LiveState({"eth0": state}))
    assert [c.action for c in p.changes] == ["cleanup"]


def test_stale_metadata_alone_is_a_change() -> None:
    live = virtual_live(build())
    prog = dataclasses.replace(live.interfaces["eth0"].program, build_digest="0" * 64)  # type: ignore[arg-type]
    p = plan(
        build(), LiveState({"eth0": dataclasses.replace(live.interfaces["eth0"], program=prog)})
    )
    assert [c.action for c in p.changes] == ["metadata"] and not p.empty


# --- several interfaces, one program -----------------------------------------------------------
THREE = BASE.replace("interfaces: [{name: eth0}]", "interfaces: [{name: eth0}, {name: eth1}]")


def test_several_interfaces_share_one_plan_of_the_maps() -> None:
    new = THREE.replace('"600": 5001', '"600": 5009')
    p = plan(build(new), virtual_live(build(THREE)))
    assert [(c.interface, c.action) for c in p.changes] == [("eth0,eth1", "route")]
    assert p.program is not None and not p.program.new and len(p.program.service_ops) == 1


def test_interface_added_joins_the_live_program_with_a_new_counter_slot() -> None:
    p = plan(build(THREE), virtual_host(build(), build(THREE)))
    assert [(c.interface, c.action) for c in p.changes] == [
        ("eth1", "attach"),
        ("eth0,eth1", "metadata"),
    ]
    assert p.program is not None and not p.program.new
    assert p.program.slots == ((2, 2),)  # eth1 (ifindex 2) takes slot 2; eth0 keeps slot 1


def test_a_swap_compiles_one_program_for_every_interface() -> None:
    new = THREE + THREE.split("services:\n")[1].replace("telemetry", "b").replace("5000", "6000")
    p = plan(build(new), virtual_live(build(THREE)))
    assert p.program is not None and p.program.new
    assert [(ip.name, ip.program_action) for ip in p.interfaces] == [
        ("eth0", "swap"),
        ("eth1", "swap"),
    ]
    assert ("eth0,eth1", "swap", "service b: added (udp/6000, 3 routes)") in [
        (c.interface, c.action, c.detail) for c in p.changes
    ]


def test_an_interface_on_another_generation_joins_the_shared_program() -> None:
    live = virtual_live(build(THREE))
    other = dataclasses.replace(live.interfaces["eth1"].program, prog_id=99)  # type: ignore[arg-type]
    half = LiveState(
        {
            **live.interfaces,
            "eth1": dataclasses.replace(live.interfaces["eth1"], prog_id=99, program=other),
        }
    )
    p = plan(build(THREE), half)
    assert p.program is not None and not p.program.new  # the program eth0 runs: no compile
    swaps = [ip.name for ip in p.interfaces if ip.program_action == "swap"]
    assert len(swaps) == 1  # one joins the other (a tie: either may be kept)
    assert "joins the program the other interfaces run" in p.changes[0].detail


def test_a_previous_release_program_is_replaced() -> None:
    live = virtual_live(build())
    old = dataclasses.replace(live.interfaces["eth0"].program, layout=1)  # type: ignore[arg-type]
    p = plan(
        build(), LiveState({"eth0": dataclasses.replace(live.interfaces["eth0"], program=old)})
    )
    assert p.program is not None and p.program.new
    assert "previous release" in p.changes[0].detail
