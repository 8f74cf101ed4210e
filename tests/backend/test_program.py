"""RouteDump reads a real route map in bulk exactly as entry-by-entry reading does."""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType

import pytest

from mplexctl.backend.loader import compile_and_load
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler import layout
from mplexctl.compiler.build import Build, compile_config
from mplexctl.compiler.layout import route_prefix
from mplexctl.config import parse_config

pytestmark = [pytest.mark.kernel, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

N_BIG = 5000


def _config() -> str:
    big = "\n".join(f'      "hex:{i:06x}": {10000 + i % 50000}' for i in range(N_BIG))
    return f"""version: 1
interfaces: [{{name: lo}}]
services:
  - name: alpha
    protocol: udp
    port: 5000
    payload_length: [{{min: 10, max: 300}}]
    tag: {{offset: 0, length: 3}}
    routes:
{big}
  - name: beta
    protocol: tcp
    port: 6000
    payload_length: [{{min: 10, max: 300}}]
    tag: {{offset: 2, length: 2}}
    routes: {{"ab": 7001, "hex:0000": 7002, "zz": 7003}}
"""


@pytest.fixture
def filled() -> Iterator[tuple[Build, ProgramMaps]]:
    """The program of _config() loaded (not attached) and its maps filled."""
    build = compile_config(parse_config(_config()))
    loaded = compile_and_load(build)
    try:
        pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
        pm.fill(build)
        yield build, pm
    finally:
        loaded.close()


def test_route_dump_matches_entry_by_entry_reading(filled: tuple[Build, ProgramMaps]) -> None:
    build, pm = filled
    other = MappingProxyType({b"abc": 9001, b"\x00\x00\x01": 9002})
    pm.write_table(0, 1, other)  # the other slot of alpha, as during a table swap
    dump = pm.route_dump()
    assert dump.count == N_BIG + 3 + 2
    entries = pm.route_entries()
    assert dump.entries() == entries
    for values in entries.values():  # write_table: the port on every CPU, counters zero
        assert len(values) >= 1
        assert values == [layout.route_value(layout.route_port(values[0]))] * len(values)
    groups = dump.groups
    assert set(groups) == {route_prefix(0, 0), route_prefix(0, 1), route_prefix(1, 0)}
    alpha, beta = build.services
    want = {0: alpha.routes, 1: other, 2: beta.routes}
    lengths = {0: 3, 1: 3, 2: 2}
    for prefix, indexes in groups.items():
        table = dump.table(indexes, lengths[prefix])
        assert table == want[prefix]
        by_entries = {
            k[4 : 4 + lengths[prefix]]: layout.route_port(v[0])
            for k, v in entries.items()
            if layout.U32.unpack(k[:4])[0] == prefix
        }
        assert table == by_entries
    pm.delete_routes([k for k in entries if layout.U32.unpack(k[:4])[0] != 0])
    single = pm.route_dump()
    assert single.groups == {0: None}  # one prefix: read without per-entry indexes
    assert single.table(None, 3) == alpha.routes


def test_write_table_keeps_the_counters_of_kept_tags(filled: tuple[Build, ProgramMaps]) -> None:
    build, pm = filled
    beta = build.services[1]
    ncpu = len(next(iter(pm.route_entries().values())))
    counted = [layout.route_value(7001, packets=10 + c, nbytes=1000 + c) for c in range(ncpu)]
    pm.write_routes([(layout.route_key(1, 0, b"ab"), counted)])
    new = MappingProxyType({b"ab": 8001, b"zz": 8003, b"qq": 8004})  # kept, kept, added
    pm.write_table(1, 1, new, keep=pm.route_dump(), keep_slot=0)
    entries = pm.route_entries()
    ab = entries[layout.route_key(1, 1, b"ab")]
    assert [layout.ROUTE.unpack(v)[3:] for v in ab] == [(10 + c, 1000 + c) for c in range(ncpu)]
    assert {layout.route_port(v) for v in ab} == {8001}
    assert entries[layout.route_key(1, 1, b"qq")] == [layout.route_value(8004)] * ncpu
    assert entries[layout.route_key(1, 1, b"zz")] == [layout.route_value(8003)] * ncpu
    assert entries[layout.route_key(1, 0, b"ab")] == counted  # the old slot is untouched
    dump = pm.route_dump()
    pm.delete_prefix(dump, route_prefix(1, 0))
    left = {layout.U32.unpack(k[:4])[0] for k in pm.route_entries()}
    assert left == {0, route_prefix(1, 1)} and len(beta.routes) == 3
