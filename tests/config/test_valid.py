"""Valid configurations: what parse_config/load_config build from them."""

from __future__ import annotations

import pathlib

import pytest

from mplexctl import constants as C
from mplexctl.config import Config, load_config, parse_config
from mplexctl.config.model import Interface, Limits, Route, TagSpec, Window
from tests.samples import BLOCK

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("accel")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "configs").glob("*.yaml"))

MINIMAL = BLOCK


def test_examples_exist() -> None:
    assert EXAMPLES, "configs/*.yaml is empty"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_shipped_configs_validate(path: pathlib.Path, yaml_loader: str) -> None:
    config = load_config(str(path))
    assert isinstance(config, Config)
    assert config.source == str(path)
    assert config.services


def test_example_content() -> None:
    config = load_config(str(ROOT / "configs" / "example.yaml"))
    assert config.interfaces == (Interface("veth-mplex0", "auto"),)
    assert [(s.name, s.protocol, s.port) for s in config.services] == [
        ("telemetry", "udp", 5000),
        ("telemetry-tcp", "tcp", 5000),
    ]
    for svc in config.services:
        assert svc.windows == (Window(290, 294),)
        assert svc.tag == TagSpec(offset=20, length=3)
        assert svc.routes == (Route(b"600", 5001), Route(b"601", 5002), Route(b"602", 5003))
        assert svc.unmatched == "drop"


def test_defaults_applied() -> None:
    config = parse_config(MINIMAL, "min.yaml")
    assert config.version == 1
    assert config.source == "min.yaml"
    assert config.interfaces == (Interface("eth0", "auto"),)
    (svc,) = config.services
    assert svc.unmatched == "drop"
    assert config.limits == Limits(
        routes=C.DEFAULT_MAX_ROUTES, services=C.DEFAULT_MAX_SERVICES, windows=C.DEFAULT_MAX_WINDOWS
    )
    assert (config.limits.routes, config.limits.services, config.limits.windows) == (65536, 64, 8)


def test_default_source_name() -> None:
    assert parse_config(MINIMAL).source == "<config>"


def test_explicit_values_kept() -> None:
    text = MINIMAL.replace("  - name: eth0\n", "  - {name: eth0, xdp_mode: native}\n")
    text = text.replace('      "600": 5001\n', '      "600": 5001\n    unmatched: pass\n')
    text += "limits: {routes: 10, services: 2, windows: 3}\n"
    config = parse_config(text)
    assert config.interfaces == (Interface("eth0", "native"),)
    assert config.services[0].unmatched == "pass"
    assert config.limits == Limits(routes=10, services=2, windows=3)


def test_partial_limits_keep_other_defaults() -> None:
    config = parse_config(MINIMAL + "limits:\n  windows: 2\n")
    assert config.limits == Limits(routes=65536, services=64, windows=2)


@pytest.mark.parametrize("mode", ["auto", "native", "generic"])
def test_xdp_modes(mode: str) -> None:
    text = MINIMAL.replace("  - name: eth0\n", f"  - name: eth0\n    xdp_mode: {mode}\n")
    assert parse_config(text).interfaces[0].xdp_mode == mode


def test_several_interfaces_in_file_order() -> None:
    text = MINIMAL.replace(
        "  - name: eth0\n", "  - name: eth1\n  - name: eth0\n    xdp_mode: generic\n"
    )
    assert parse_config(text).interfaces == (
        Interface("eth1", "auto"),
        Interface("eth0", "generic"),
    )


def test_no_interfaces_is_allowed() -> None:
    assert parse_config(MINIMAL.replace("interfaces:\n  - name: eth0\n", "interfaces: []\n"))


def test_routes_decoded_and_sorted(yaml_loader: str) -> None:
    text = """\
version: 1
interfaces: []
services:
  - name: s
    protocol: udp
    port: 5000
    payload_length: [{min: 8, max: 100}]
    tag: {offset: 0, length: 2}
    routes:
      "zz": 6001
      "hex:0001": 6002
      "AB": 6003
      "hex:ff10": 6004
      "a ": 6005
"""
    (svc,) = parse_config(text).services
    assert svc.routes == (
        Route(b"\x00\x01", 6002),
        Route(b"AB", 6003),
        Route(b"a ", 6005),
        Route(b"zz", 6001),
        Route(b"\xff\x10", 6004),
    )
    assert [r.tag_text for r in svc.routes] == ["hex:0001", "AB", "a ", "zz", "hex:ff10"]


def test_hex_digits_any_case() -> None:
    text = MINIMAL.replace('"600"', '"hex:aBcDeF"')
    assert parse_config(text).services[0].routes == (Route(b"\xab\xcd\xef", 5001),)


def test_key_starting_with_hex_prefix_is_always_hex() -> None:
    # "hex:41424344" is the 4 bytes ABCD, never 12 characters of text (test_invalid checks
    # that "hex:4142" with tag.length 8 is an error, not the 8 characters h, e, x, ...).
    text = MINIMAL.replace("length: 3", "length: 4").replace('"600"', '"hex:41424344"')
    assert parse_config(text).services[0].routes == (Route(b"ABCD", 5001),)


def test_literal_hex_prefix_bytes_written_as_hex() -> None:
    # The 4 bytes "hex:" themselves can only be written in hex; tag_text round-trips it.
    text = MINIMAL.replace("length: 3", "length: 4").replace('"600"', '"hex:6865783a"')
    (route,) = parse_config(text).services[0].routes
    assert route.tag == b"hex:"
    assert route.tag_text == "hex:6865783a"


def test_prefix_is_case_sensitive() -> None:
    text = MINIMAL.replace("length: 3", "length: 8").replace('"600"', '"HEX:4142"')
    assert parse_config(text).services[0].routes == (Route(b"HEX:4142", 5001),)


def test_services_keep_file_order_and_windows_sorted() -> None:
    text = """\
version: 1
interfaces: []
services:
  - name: zulu
    protocol: tcp
    port: 7000
    payload_length:
      - {min: 500, max: 600}
      - {min: 10, max: 20}
      - {min: 21, max: 21}
    tag: {offset: 2, length: 1}
    unmatched: pass
  - name: alpha
    protocol: udp
    port: 7000
    payload_length: [{min: 1, max: 65535}]
    tag: {offset: 0, length: 1}
    routes: {"x": 7001}
  - name: 9-mid_dle
    protocol: udp
    port: 7002
    payload_length: [{min: 8, max: 8}]
    tag: {offset: 0, length: 8}
    routes: {"12345678": 7003}
"""
    config = parse_config(text)
    assert [s.name for s in config.services] == ["zulu", "alpha", "9-mid_dle"]
    zulu = config.services[0]
    assert zulu.windows == (Window(10, 20), Window(21, 21), Window(500, 600))
    assert zulu.routes == ()
    assert zulu.unmatched == "pass"


def test_route_ports_shared_between_services() -> None:
    # Two routes of two services may lead to the same backend port; only service ports are
    # forbidden as targets.
    text = (
        MINIMAL
        + """\
  - name: other
    protocol: tcp
    port: 5000
    payload_length: [{min: 23, max: 23}]
    tag: {offset: 20, length: 3}
    routes: {"600": 5001, "hex:000102": 5001}
"""
    )
    config = parse_config(text)
    assert config.services[1].routes == (Route(b"\x00\x01\x02", 5001), Route(b"600", 5001))


def test_tag_exactly_fits_shortest_window() -> None:
    text = MINIMAL.replace("{offset: 20, length: 3}", "{offset: 287, length: 3}")
    assert parse_config(text).services[0].tag == TagSpec(287, 3)


def test_adjacent_windows_do_not_overlap() -> None:
    text = MINIMAL.replace(
        "      - {min: 290, max: 294}\n",
        "      - {min: 295, max: 300}\n      - {min: 290, max: 294}\n",
    )
    assert parse_config(text).services[0].windows == (Window(290, 294), Window(295, 300))


def test_port_bounds_accepted() -> None:
    text = MINIMAL.replace("port: 5000", "port: 65535").replace('"600": 5001', '"600": 1')
    svc = parse_config(text).services[0]
    assert (svc.port, svc.routes[0].port) == (65535, 1)


def test_interface_name_of_15_bytes() -> None:
    text = MINIMAL.replace("name: eth0", "name: abcdefghijklmno")
    assert parse_config(text).interfaces[0].name == "abcdefghijklmno"


def test_anchors_and_aliases_share_values(yaml_loader: str) -> None:
    text = """\
version: 1
interfaces: []
services:
  - name: a
    protocol: udp
    port: 5000
    payload_length: &windows
      - {min: 30, max: 40}
      - {min: 50, max: 60}
    tag: &tag {offset: 0, length: 2}
    routes: &routes {"ab": 6000}
  - name: b
    protocol: tcp
    port: 5000
    payload_length: *windows
    tag: *tag
    routes: *routes
"""
    a, b = parse_config(text).services
    assert a.windows == b.windows == (Window(30, 40), Window(50, 60))
    assert a.routes == b.routes == (Route(b"ab", 6000),)


def test_yaml_comments_documents_and_flow_style(yaml_loader: str) -> None:
    text = (
        "# leading comment\n---\n"
        "{version: 1, interfaces: [{name: lo}], services: [{name: s, protocol: tcp, port: 1,"
        " payload_length: [{min: 1, max: 1}], tag: {offset: 0, length: 1}, unmatched: pass}]}\n"
        "...\n"
    )
    config = parse_config(text)
    assert config.services[0].windows == (Window(1, 1),)


def test_byte_order_mark_is_ignored(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(str(path)).interfaces == (Interface("eth0", "auto"),)


def test_parse_and_load_agree(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_config(str(path)) == parse_config(MINIMAL, str(path))
