"""Encodings of map indexes and keys: one definition, a C macro and a Python function."""

from __future__ import annotations

import pytest

from mplexctl import constants as C
from mplexctl.compiler import layout
from mplexctl.compiler.header import c_macro, render_common_header

pytestmark = pytest.mark.unit


def test_every_encoding_is_a_macro_of_the_common_header() -> None:
    header = render_common_header()
    for name, enc in C.ENCODINGS.items():
        assert c_macro(name, enc) in header
    assert "#define MPLEX_ROUTE_PREFIX(svc, slot) (((svc) << 1) | (slot))" in header


def test_python_functions_follow_the_encodings() -> None:
    for svc in range(0, 300, 7):
        for slot in (0, 1):
            prefix = layout.route_prefix(svc, slot)
            assert (layout.route_prefix_svc(prefix), layout.route_prefix_slot(prefix)) == (
                svc,
                slot,
            )
            assert layout.split_route_key(layout.route_key(svc, slot, b"ab"))[:2] == (svc, slot)
    assert layout.svc_row(5, 1) == 11
    nv = len(C.VERDICTS)
    rows = {layout.stats_row(s, v, d, 3) for s in range(4) for v in range(3) for d in range(nv)}
    assert rows == set(range(4 * 3 * nv))  # one row each, no gaps


def test_counter_slots() -> None:
    assert C.if_slots(1) == C.if_slots(63) == 64
    assert C.if_slots(64) == 128 and C.if_slots(200) == 256


def test_map_names_fit_a_bpf_object_name() -> None:
    """The kernel keeps 15 characters of a map's name: probe finds maps by that name."""
    names = [v for k, v in vars(C).items() if k.startswith("MAP_")]
    assert names and all(len(n) <= 15 for n in names), names
