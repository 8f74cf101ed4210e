"""The route table of layout 3 (open addressing in an mmapped array) against the real data
plane: untorn re-targets and re-adds under PROG_TEST_RUN, tables that fill the probe bound,
placement that stays within it, counters kept by index."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator

import pytest

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.backend.loader import compile_and_load
from mplexctl.backend.program import ProgramMaps
from mplexctl.backend.routes import homes, tag_word
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import parse_config
from tests.dataplane.packets import Spec, build

pytestmark = [pytest.mark.kernel, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PORT_A, PORT_B = 7001, 7002
TAG = b"abc"
WINDOW = (20, 40)
SPARE_CTR = 500  # counter indexes no route of the fixture holds
RUNS = 4000  # PROG_TEST_RUN calls per phase (repeat=1: the output of each is checked)


def _config(routes: dict[str, int], limit: int = 1024) -> str:
    text = ", ".join(f'"{k}": {v}' for k, v in routes.items())
    return f"""version: 1
interfaces: [{{name: lo}}]
limits: {{routes: {limit}}}
services:
  - name: alpha
    protocol: udp
    port: 5000
    payload_length: [{{min: {WINDOW[0]}, max: {WINDOW[1]}}}]
    tag: {{offset: 0, length: 3}}
    routes: {{{text}}}
"""


@pytest.fixture
def loaded() -> Iterator[tuple[Build, ProgramMaps, int]]:
    build = compile_config(parse_config(_config({"abc": PORT_A, "xyz": 7003})))
    ld = compile_and_load(build)
    try:
        pm = ProgramMaps.from_fd(ld.prog_fd, ld.maps)
        pm.fill(build)
        yield build, pm, ld.prog_fd
        pm.close()
    finally:
        ld.close()


def _frame(dport: int, tag: bytes = TAG) -> bytes:
    return build(Spec(dport=dport, payload=tag + bytes(range(27)))).bytes()


def _spin(ns: int = 20_000) -> None:
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def _hammer(prog_id: int, what: str, stop: object) -> None:
    """In a child process: change the route of TAG as fast as it can until `stop` is set."""
    pm = ProgramMaps.open(prog_id)
    assert pm is not None
    t = pm.slots
    _which, row = pm.live_row(0)
    key = layout.route_slot_key(layout.route_prefix(0, row.slot))
    at = t.find(key, tag_word(TAG), row.seed)
    assert at is not None
    while not stop.is_set():  # type: ignore[attr-defined]
        for _ in range(1000):
            if what == "retarget":
                t.retarget(at, PORT_B)
                t.retarget(at, PORT_A)
            else:  # delete and add again: a tombstone, then the tag and another counter
                t.tombstone([at])
                t.add(key, at, tag_word(TAG), PORT_B, SPARE_CTR)
                _spin()  # live most of the time, so packets see both routes
                t.tombstone([at])
                t.add(key, at, tag_word(TAG), PORT_A, SPARE_CTR + 1)
                _spin()
    pm.close()


@pytest.mark.parametrize("what", ["retarget", "readd"])
def test_no_torn_route_while_it_is_rewritten(
    loaded: tuple[Build, ProgramMaps, int], what: str
) -> None:
    """A packet sees the old route or the new one, whole: never a mix (e.g. another tag's
    port) while another process re-targets (or deletes and re-adds) it as fast as it can."""
    _build, pm, fd = loaded
    frame = _frame(5000)
    want = {_frame(PORT_A): "a", _frame(PORT_B): "b"}
    ctx = mp.get_context("fork")
    stop = ctx.Event()
    child = ctx.Process(target=_hammer, args=(pm.prog_id, what, stop))
    child.start()
    seen = {"a": 0, "b": 0, "miss": 0}
    try:
        time.sleep(0.2)
        runs, deadline = 0, time.monotonic() + 60  # a loaded machine may starve the child
        while runs < RUNS or (not (seen["a"] and seen["b"]) and time.monotonic() < deadline):
            runs += 1
            tr = bpfsys.prog_test_run(fd, frame, 1)
            if tr.retval == C.XDP_DROP and what == "readd":
                seen["miss"] += 1  # between a delete and the add: unknown tag, dropped
                continue
            assert tr.retval == C.XDP_PASS
            assert tr.data in want, "a frame neither route would write"
            seen[want[tr.data]] += 1
    finally:
        stop.set()
        child.join(30)
    assert child.exitcode == 0
    assert seen["a"] > 0 and seen["b"] > 0, seen  # the writes really raced the packets


def test_a_full_table_places_every_tag_within_the_bound() -> None:
    """limits.routes routes in one service: every tag found by the data plane, an unknown
    tag missed, and the probe bound the row carries covers the longest displacement."""
    n = 4096
    routes = {f"{i:03x}": 10000 + i for i in range(n)}
    build = compile_config(parse_config(_config(routes, limit=n)))
    ld = compile_and_load(build)
    try:
        pm = ProgramMaps.from_fd(ld.prog_fd, ld.maps)
        pm.fill(build)
        _which, row = pm.live_row(0)
        assert 1 <= row.probes <= C.ROUTE_PROBES_MAX
        t = pm.slots
        live = t.live()
        assert len(live) == n
        words = [t.words[2 * i] for i in live]
        worst = max(p - h for p, h in zip(live, homes(words, row.seed, t.bits), strict=True))
        assert row.probes == worst + 1
        for tag in (b"000", b"7ff", b"fff", b"a5c"):
            tr = bpfsys.prog_test_run(ld.prog_fd, _frame(5000, tag), 1)
            assert tr.data == _frame(routes[tag.decode()], tag)
        tr = bpfsys.prog_test_run(ld.prog_fd, _frame(5000, b"zzz"), 1)
        assert tr.retval == C.XDP_DROP
        pm.close()
    finally:
        ld.close()


def test_counters_follow_the_index_across_a_retarget(
    loaded: tuple[Build, ProgramMaps, int],
) -> None:
    """Packets count under the route's counter index; a re-target keeps the index, so the
    counters carry on without a copy."""
    _build, pm, fd = loaded
    for _ in range(3):
        bpfsys.prog_test_run(fd, _frame(5000), 1)
    key = layout.route_key(0, 0, TAG)
    before = pm.route_values(key)
    assert before is not None
    assert sum(layout.ROUTE.unpack(v)[3] for v in before) == 3
    _which, row = pm.live_row(0)
    at = pm.slots.find(layout.route_slot_key(0), tag_word(TAG), row.seed)
    assert at is not None
    pm.slots.retarget(at, PORT_B)
    bpfsys.prog_test_run(fd, _frame(5000), 1)
    after = pm.route_values(key)
    assert after is not None
    assert sum(layout.ROUTE.unpack(v)[3] for v in after) == 4
    assert layout.route_port(after[0]) == PORT_B


def test_an_add_beyond_the_probe_bound_becomes_a_table_swap(
    loaded: tuple[Build, ProgramMaps, int],
) -> None:
    """A route whose home slot is followed by ROUTE_PROBES_MAX occupied slots cannot be added
    in place: engine.execute swaps the service's table instead (fresh seed, other slot), and
    every route, old and new, is found."""
    from dataclasses import replace
    from types import MappingProxyType

    from mplexctl.engine.execute import _service_op
    from mplexctl.engine.plan import ServiceOp

    build, pm, fd = loaded
    t = pm.slots
    _which, row = pm.live_row(0)
    new_tag = b"qrs"
    (home,) = homes([tag_word(new_tag)], row.seed, t.bits)
    other = layout.route_slot_key(layout.route_prefix(5, 0))  # no service of this program
    for i, at in enumerate(range(home, home + C.ROUTE_PROBES_MAX)):
        if t.words[2 * at + 1] == 0:
            t.words[2 * at] = 0x7E7E7E + i
            t.words[2 * at + 1] = (other << C.SLOT_KEY_SHIFT) | 1000 + i << C.SLOT_CTR_SHIFT
    assert t.place_one(tag_word(new_tag), row.seed) is None
    svc = build.services[0]
    want = replace(svc, routes=MappingProxyType({**svc.routes, new_tag: 7009}))
    _service_op(pm, ServiceOp(0, "route", want, svc, (new_tag,)), build)
    _which, after = pm.live_row(0)
    assert after.slot == 1 - row.slot and after.seed != row.seed
    for tag, port in want.routes.items():
        tr = bpfsys.prog_test_run(fd, _frame(5000, tag), 1)
        assert tr.data == _frame(port, tag), tag


N_STRAY = 20_000  # routes of a table no service row names


def test_a_batch_of_routes_of_an_unknown_table_reads_the_table_twice_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """delete_routes of N_STRAY keys whose table no service row names (so its seed is
    unknown: a stray table, the benchmark's bare fill): each key was searched by a pass over
    every slot (N_STRAY passes). Now: one pass for the first such key, one more to index
    the live slots, then dictionary lookups. Slot reads are counted through the seam every
    whole-table read goes through (SlotTable.keys) and the probes of SlotTable.find."""
    build = compile_config(parse_config(_config({"abc": PORT_A, "xyz": 7003}, limit=32768)))
    ld = compile_and_load(build)
    try:
        pm = ProgramMaps.from_fd(ld.prog_fd, ld.maps)
        pm.fill(build)  # service 0's rows name slot 0 only
        stray = {i.to_bytes(3, "big"): 10000 + i % 50000 for i in range(N_STRAY)}
        pm.write_table(0, 1, stray)
        t = pm.slots
        passes, finds = [0], [0]
        keys_of, find = type(t).keys, type(t).find

        def counted_keys(self: object) -> object:
            passes[0] += 1
            assert passes[0] <= 4, "a pass over the route table per key"
            return keys_of(t)

        def counted_find(self: object, key: int, tag: int, seed: int) -> int | None:
            finds[0] += 1
            return find(t, key, tag, seed)

        monkeypatch.setattr(type(t), "keys", counted_keys)
        monkeypatch.setattr(type(t), "find", counted_find)
        known = [layout.route_key(0, 0, b"xyz"), layout.route_key(0, 0, b"nop")]  # nop: absent
        absent = [layout.route_key(0, 1, b"\xff\xff\xff")]
        batch = [layout.route_key(0, 1, tag) for tag in stray] + known + absent

        pm.delete_routes([layout.route_key(0, 1, b"\x00\x00\x07")])  # one key: one pass
        assert (passes[0], finds[0]) == (1, 0)
        passes[0] = 0
        pm.delete_routes(batch)
        assert passes[0] == 2  # the first key's pass, the index: not one per key
        assert finds[0] == len(known)  # the table with a seed is probed, as before
        reads = passes[0] * t.nslots + finds[0] * C.ROUTE_PROBES_MAX
        assert reads <= 2 * t.nslots + C.ROUTE_PROBES_MAX * len(batch)  # linear in the batch
        monkeypatch.undo()
        left = pm.route_dump().groups
        assert set(left) == {layout.route_prefix(0, 0)}  # every stray route is gone
        assert pm.route_dump().table(left[layout.route_prefix(0, 0)], 3) == {b"abc": PORT_A}
        pm.close()
    finally:
        ld.close()
