"""Compiler: deterministic, split into program (defines) and map contents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mplexctl import constants as C
from mplexctl.compiler import layout
from mplexctl.compiler.build import compile_config
from mplexctl.compiler.header import render_common_header
from mplexctl.config import load_config, parse_config
from tests.samples import BASE

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "example.yaml"


def build_of(text: str):  # type: ignore[no-untyped-def]
    return compile_config(parse_config(text, "t.yaml"))


def test_common_header_in_sync_with_constants() -> None:
    assert (ROOT / "bpf" / "mplex_common.h").read_text() == render_common_header()


def test_same_config_same_bytes_across_processes() -> None:
    code = (
        "from mplexctl.config import load_config;"
        "from mplexctl.compiler.build import compile_config;"
        f"b = compile_config(load_config({str(EXAMPLE)!r}));"
        "import sys; sys.stdout.write(b.source + b.digest + repr(b.maps_readable()))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(runs) == 1


@pytest.mark.parametrize(
    "edit",
    [
        ('"600": 5001', '"600": 5009'),  # route port
        ('"601": 5002', '"6XY": 5002'),  # tag
        ("{min: 290, max: 294}", "{min: 290, max: 299}"),  # window
        ("{min: 290, max: 294}", "{min: 290, max: 291}, {min: 300, max: 310}"),
        ("routes:", "unmatched: pass\n    routes:"),
        ("{offset: 20, length: 3}", "{offset: 21, length: 3}"),  # tag offset
    ],
)
def test_map_only_changes_keep_the_program(edit: tuple[str, str]) -> None:
    a, b = build_of(BASE), build_of(BASE.replace(*edit))
    assert a.program_digest == b.program_digest
    assert a.source == b.source
    assert a.digest != b.digest


@pytest.mark.parametrize(
    "edit",
    [
        ("port: 5000", "port: 5005"),
        ("protocol: udp", "protocol: tcp"),
        ("interfaces:", "limits: {routes: 100}\ninterfaces:"),
        ("interfaces:", "limits: {windows: 4}\ninterfaces:"),
    ],
)
def test_structural_changes_change_the_program(edit: tuple[str, str]) -> None:
    assert build_of(BASE).program_digest != build_of(BASE.replace(*edit)).program_digest


def test_service_order_in_file_does_not_change_program() -> None:
    two = BASE + BASE.split("services:\n")[1].replace("telemetry", "alpha").replace("5000", "6000")
    lines = two.split("services:\n")
    svcs = lines[1].split("  - name: ")
    swapped = lines[0] + "services:\n" + "  - name: " + svcs[2] + "  - name: " + svcs[1]
    assert build_of(two).program_digest == build_of(swapped).program_digest
    assert [s.name for s in build_of(two).services] == ["alpha", "telemetry"]


def test_map_bytes() -> None:
    b = build_of(BASE)
    (svc,) = b.services
    row = layout.unpack_svc(svc.value(b.max_windows))
    assert (row.tag_off, row.tag_len, row.slot, row.windows) == (20, 3, 0, ((290, 294),))
    assert row.flags == C.SVC_F_VALID
    assert len(svc.value(b.max_windows)) == layout.svc_value_size(C.DEFAULT_MAX_WINDOWS)
    r = b.routes[0]
    assert r.key() == (0).to_bytes(4, "little") + b"600" + bytes(5)
    assert layout.route_port(layout.route_value(r.port)) == 5001
    assert layout.route_value(5001)[:2] == (5001).to_bytes(2, "big")


def test_defines_emit_numbers_not_enums() -> None:
    b = build_of(BASE.replace("protocol: udp", "protocol: tcp"))
    defines = dict(b.defines)
    assert defines["MPLEX_HAVE_TCP"] == "1" and defines["MPLEX_HAVE_UDP"] == "0"
    assert defines["MPLEX_TCP_SERVICES(X)"] == "X(5000, 0)"
    assert defines["MPLEX_ROUTES_MAP_SIZE"] == str(2 * C.DEFAULT_MAX_ROUTES)
    assert "IPPROTO_" not in b.header


def test_final_source_is_self_contained() -> None:
    b = compile_config(load_config(str(EXAMPLE)))
    assert '#include "' not in b.source
    assert "#define MPLEX_NSERVICES 2" in b.source
    assert "struct mplex_route_key {" in b.source
