"""The accelerators are taken by default, and none when MPLEXCTL_ACCEL=0: the same applies
give the same results both ways (each shortcut answers "not applicable" and is optional)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mplexctl.accel import noop, overlap, reprobe, routeblocks, verdicts
from mplexctl.engine.apply import apply
from tests.samples import SERVICE_HEAD
from tests.support.hosts import Host, route_of
from tests.support.netns import in_netns

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("accel")]

SHORTCUTS: list[tuple[Any, str]] = [
    (routeblocks, "load_located"),
    (verdicts, "store"),
    (noop, "unchanged"),
    (overlap, "load_and_probe"),
    (reprobe, "confirmed"),
]


def _block_config(host: Host, routes: dict[str, int]) -> Path:
    lines = "".join(f'      "{tag}": {port}\n' for tag, port in routes.items())
    text = SERVICE_HEAD.replace("eth0", host.xdp) + "    routes:\n" + lines
    path = host.tmp / f"block-{len(routes)}-{sum(routes.values())}.yaml"
    path.write_text(text)
    return path


def _spy(monkeypatch: pytest.MonkeyPatch, taken: set[str]) -> None:
    """Record each accelerator that answers something other than "not applicable"."""
    for module, name in SHORTCUTS:
        real: Callable[..., Any] = getattr(module, name)

        def spy(*args: Any, _real: Callable[..., Any] = real, _name: str = name) -> Any:
            answer = _real(*args)
            if answer is not None and answer != {}:
                taken.add(_name)
            return answer

        monkeypatch.setattr(module, name, spy)


def test_shortcuts_taken_only_when_on(
    host: Host, accel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = {"600": 5001, "601": 5002, "602": 5003}
    first = _block_config(host, routes)
    host.apply(first)
    prog = host.status()["prog_id"]
    taken: set[str] = set()
    _spy(monkeypatch, taken)
    with in_netns(host.ns):
        same = apply(str(first))
        assert not same.changed and same.plan.empty
        assert taken == ({"unchanged"} if accel else set())
        taken.clear()
        changed = apply(str(_block_config(host, {**routes, "601": 5009})))
    assert changed.changed and changed.verified and changed.compiles == 0
    assert [c.action for c in changed.plan.changes] == ["route"]
    assert route_of(prog, b"601") == 5009 and route_of(prog, b"600") == 5001
    want = {"load_located", "store", "load_and_probe", "confirmed"}
    assert taken == (want if accel else set())
