"""What the plan says (issue #15, item 8 and 9): the values a program swap changes, the
README's labels, and the states an operator would otherwise not see."""

from __future__ import annotations

import dataclasses

import pytest

from mplexctl.cli.render import plan_text
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import parse_config
from mplexctl.engine.plan import IMPACT, plan, virtual_host, virtual_live
from mplexctl.engine.state import LiveState
from tests.samples import BASE

pytestmark = pytest.mark.unit


def build(text: str = BASE) -> Build:
    return compile_config(parse_config(text, "t.yaml"))


def test_limits_change_names_the_values_and_says_counters_restart() -> None:
    new = build(BASE + "limits: {routes: 1024, windows: 4}\n")
    p = plan(new, virtual_host(build(), new))
    (swap,) = (c for c in p.changes if c.detail.startswith("program "))
    assert "limits.routes 65536 -> 1024" in swap.detail
    assert "limits.windows 8 -> 4" in swap.detail
    assert swap.impact == "program swap (counters restart)"
    assert "services" not in swap.detail


def test_a_service_added_is_the_reason_of_the_swap() -> None:
    new = build(BASE.replace("name: telemetry", "name: alpha"))
    p = plan(new, virtual_host(build(), new))
    (swap,) = (c for c in p.changes if c.detail.startswith("program "))
    assert "services added, removed" in swap.detail and "limits" not in swap.detail


def test_window_change_is_labelled_service_row_swap_without_padding() -> None:
    new = build(BASE.replace("max: 294", "max: 296"))
    p = plan(new, virtual_host(build(), new))
    assert {c.impact for c in p.changes} == {IMPACT["row"]} == {"map update (service row swap)"}
    assert "[map update (service row swap)] service telemetry: windows" in plan_text(p)
    mixed = build(BASE.replace("max: 294", "max: 296").replace('"600": 5001', '"600": 5009'))
    text = plan_text(plan(mixed, virtual_host(build(), mixed)))
    assert "[map update (route table swap)] " in text and " ]" not in text


def test_auto_after_generic_says_it_keeps_generic() -> None:
    live = virtual_live(build())
    generic = LiveState({"eth0": dataclasses.replace(live.interfaces["eth0"], mode="generic")})
    p = plan(build(), generic)
    assert p.empty
    (note,) = p.notes
    assert "xdp_mode auto keeps the running generic mode" in note
    assert plan_text(p) == f"no changes\nnote: {note}"
    assert plan(build(), live).notes == ()  # native: nothing to say


def test_an_interface_that_is_down_gets_a_warning() -> None:
    eth0 = virtual_live(build()).interfaces["eth0"]
    down = LiveState({"eth0": dataclasses.replace(eth0, prog_id=0, program=None, up=False)})
    p = plan(build(), down)
    assert p.changes[0].action == "attach"
    (warning,) = p.warnings
    assert warning.startswith("eth0 is down") and "ip link set eth0 up" in warning
