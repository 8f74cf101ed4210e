"""Invalid configurations: every problem is reported, as FILE:LINE: PATH: message."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import pytest

from mplexctl.config import parse_config
from mplexctl.config.yamlsrc import MAX_DEPTH
from mplexctl.errors import ConfigError
from tests.samples import BLOCK

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("accel")]

FILE = "bad.yaml"

BASE = BLOCK  # line numbers: see tests/samples.py (the cases below count on them)

# Appended to BASE: lines 13..20 (13 name, 14 protocol, 15 port, 17 window, 18 tag, 20 route).
SECOND = BLOCK[BLOCK.index("  - name: telemetry") :].replace("telemetry", "telemetry-tcp", 1)
SECOND = SECOND.replace("protocol: udp", "protocol: tcp")


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def two(old: str = "", new: str = "") -> str:
    """BASE + SECOND, with one edit in SECOND's part (lines 13..20)."""
    return BASE + (edit(old, new, SECOND) if old else SECOND)


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    expected: list[tuple[int, str, str]]  # (line, path, message substring), in report order


CASES = [
    # --- the file as a whole ---------------------------------------------------------------
    Case(
        "yaml-syntax-error",
        edit("    protocol: udp\n", "    protocol: udp: x\n"),
        [(6, "(top)", "invalid YAML: mapping values are not allowed")],
    ),
    Case(
        "yaml-unclosed-flow-mapping",
        edit("{min: 290, max: 294}", "{min: 290, max: 294"),
        [(10, "(top)", "invalid YAML")],
    ),
    Case(
        "yaml-tab-indentation",
        edit("    port: 5000\n", "\tport: 5000\n"),
        [(7, "(top)", "invalid YAML: ")],
    ),
    Case(
        "yaml-bad-tagged-scalar",
        edit("port: 5000", "port: !!int five"),
        [(7, "(top)", "cannot read 'five' as !!int")],
    ),
    Case(
        "yaml-unknown-tag",
        edit("port: 5000", "port: !port 5000"),
        [(7, "(top)", "could not determine a constructor for the tag '!port'")],
    ),
    Case(
        "yaml-recursive-alias",
        edit("      - {min: 290, max: 294}\n", "      - &w [*w]\n"),
        [(9, "(top)", "an alias refers to its own anchor")],
    ),
    Case(
        "yaml-merge-key",
        edit("    port: 5000\n", "    port: 5000\n    <<: {unmatched: pass}\n"),
        [(8, "(top)", "merge keys (<<) are not supported")],
    ),
    Case(
        "yaml-nul-character",
        edit("    protocol: udp\n", "    protocol: ud\0p\n"),
        [(6, "(top)", "unacceptable character #x0000")],
    ),
    Case(
        "yaml-control-character-after-utf8",
        edit("name: eth0\n", "name: éééé\n").replace("name: telemetry", "name: tél\x01"),
        [(5, "(top)", "unacceptable character #x0001")],
    ),
    Case(
        "yaml-too-deep",
        BASE + "x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n",
        [(13, "(top)", f"nested deeper than {MAX_DEPTH} levels")],
    ),
    Case(
        "yaml-two-documents",
        BASE + "---\n" + BASE,
        [(13, "(top)", "expected a single document")],
    ),
    Case("empty-file", "", [(1, "(top)", "the file must hold a mapping")]),
    Case("only-comments", "# nothing yet\n", [(1, "(top)", "the file must hold a mapping")]),
    Case(
        "top-level-list",
        "- version: 1\n- services: []\n",
        [(1, "(top)", "the file must hold a mapping")],
    ),
    Case("top-level-scalar", "mplex\n", [(1, "(top)", "the file must hold a mapping")]),
    Case(
        "duplicate-key",
        edit("    protocol: udp\n", "    protocol: udp\n    protocol: tcp\n"),
        [(7, "services[0].protocol", "key 'protocol' appears twice in the same mapping")],
    ),
    Case(
        "duplicate-key-top-level",
        BASE + "version: 1\n",
        [(13, "version", "key 'version' appears twice")],
    ),
    Case(
        "duplicate-route-key",
        edit('      "600": 5001\n', '      "600": 5001\n      "600": 5002\n'),
        [(13, 'services[0].routes."600"', "key '600' appears twice")],
    ),
    # --- version ---------------------------------------------------------------------------
    Case("version-2", edit("version: 1", "version: 2"), [(1, "version", "must be 1, not 2")]),
    Case(
        "version-string",
        edit("version: 1", 'version: "1"'),
        [(1, "version", "must be 1, not '1'")],
    ),
    Case("version-float", edit("version: 1", "version: 1.0"), [(1, "version", "not 1.0")]),
    Case(
        "version-missing",
        edit("version: 1\n", ""),
        [(1, "(top)", "missing required key 'version'")],
    ),
    # --- missing keys ----------------------------------------------------------------------
    Case(
        "missing-services",
        "version: 1\ninterfaces: []\n",
        [(1, "(top)", "missing required key 'services'")],
    ),
    Case(
        "missing-interface-name",
        edit("  - name: eth0\n", "  - xdp_mode: native\n"),
        [(3, "interfaces[0]", "missing required key 'name'")],
    ),
    Case(
        "missing-service-tag",
        edit("    tag: {offset: 20, length: 3}\n", ""),
        [(5, "services[0]", "missing required key 'tag'")],
    ),
    Case(
        "missing-window-max",
        edit("{min: 290, max: 294}", "{min: 290}"),
        [(9, "services[0].payload_length[0]", "missing required key 'max'")],
    ),
    Case(
        "missing-tag-offset",
        edit("{offset: 20, length: 3}", "{length: 3}"),
        [(10, "services[0].tag", "missing required key 'offset'")],
    ),
    # --- unknown keys (line of the key itself) ---------------------------------------------
    Case(
        "unknown-key-top",
        BASE + "extra: 1\n",
        [
            (
                13,
                "extra",
                "unknown key 'extra' (allowed: expect, interfaces, limits, services, version)",
            )
        ],
    ),
    Case(
        "unknown-key-interface",
        edit("  - name: eth0\n", "  - name: eth0\n    mode: native\n"),
        [(4, "interfaces[0].mode", "unknown key 'mode' (allowed: hook, name, xdp_mode)")],
    ),
    Case(
        "unknown-key-service",
        edit("    port: 5000\n", "    port: 5000\n    priority: 1\n"),
        [(8, "services[0].priority", "unknown key 'priority'")],
    ),
    Case(
        "unknown-key-window",
        edit("{min: 290, max: 294}", "{min: 290, max: 294, step: 1}"),
        [(9, "services[0].payload_length[0].step", "unknown key 'step' (allowed: max, min)")],
    ),
    Case(
        "unknown-key-tag",
        edit(
            "    tag: {offset: 20, length: 3}\n",
            "    tag:\n      offset: 20\n      length: 3\n      mask: 255\n",
        ),
        [(13, "services[0].tag.mask", "unknown key 'mask' (allowed: length, offset)")],
    ),
    Case(
        "unknown-key-limits",
        BASE + "limits:\n  routes: 10\n  maps: 3\n",
        [(15, "limits.maps", "unknown key 'maps' (allowed: flows, routes, services, windows)")],
    ),
    Case(
        "unknown-keys-all-reported",
        BASE + "foo: 1\nbar: 2\n",
        [(13, "foo", "unknown key 'foo'"), (14, "bar", "unknown key 'bar'")],
    ),
    Case(
        "unknown-numeric-key",
        BASE + "5: x\n",
        [(13, '"5"', "unknown key '5'")],
    ),
    # --- wrong types -----------------------------------------------------------------------
    Case(
        "port-string",
        edit("port: 5000", 'port: "5000"'),
        [(7, "services[0].port", "must be a number, not the string '5000'")],
    ),
    Case(
        "port-float",
        edit("port: 5000", "port: 5000.0"),
        [(7, "services[0].port", "must be a whole number, not 5000.0")],
    ),
    Case(
        "port-bool",
        edit("port: 5000", "port: true"),
        [(7, "services[0].port", "must be a whole number, not a boolean")],
    ),
    Case(
        "port-null",
        edit("port: 5000", "port:"),
        [(7, "services[0].port", "must be a whole number, not nothing (null)")],
    ),
    Case(
        "route-port-bool",
        edit('"600": 5001', '"600": yes'),
        [(12, 'services[0].routes."600"', "must be a whole number, not a boolean")],
    ),
    Case(
        "interfaces-mapping",
        edit("  - name: eth0\n", "  name: eth0\n"),
        [(3, "interfaces", "must be a list, not a mapping")],
    ),
    Case(
        "routes-list",
        edit('      "600": 5001\n', '      - "600"\n'),
        [(12, "services[0].routes", "must be a mapping, not a list")],
    ),
    Case(
        "tag-length-string",
        edit("length: 3", 'length: "3"'),
        [(10, "services[0].tag.length", "must be a number, not the string '3'")],
    ),
    Case(
        "window-date",
        edit("max: 294", "max: 2024-01-01"),
        [(9, "services[0].payload_length[0].max", "not the date 2024-01-01")],
    ),
    # --- enums and names -------------------------------------------------------------------
    Case(
        "xdp-mode-unknown",
        edit("  - name: eth0\n", "  - {name: eth0, xdp_mode: fast}\n"),
        [(3, "interfaces[0].xdp_mode", "'fast' is not one of: auto | native | generic")],
    ),
    Case(
        "protocol-unknown",
        edit("protocol: udp", "protocol: UDP"),
        [(6, "services[0].protocol", "'UDP' is not one of: udp | tcp")],
    ),
    Case(
        "unmatched-unknown",
        BASE + "    unmatched: reject\n",
        [(13, "services[0].unmatched", "'reject' is not one of: drop | pass")],
    ),
    Case(
        "service-name-uppercase",
        edit("name: telemetry", "name: Telemetry"),
        [(5, "services[0].name", "'Telemetry' is not a valid name")],
    ),
    Case(
        "service-name-33-chars",
        edit("name: telemetry", "name: " + "t" * 33),
        [(5, "services[0].name", "is not a valid name")],
    ),
    Case(
        "service-name-leading-dash",
        edit("name: telemetry", "name: -telemetry"),
        [(5, "services[0].name", "'-telemetry' is not a valid name")],
    ),
    Case(
        "service-name-trailing-newline",
        edit("name: telemetry", 'name: "telemetry\\n"'),
        [(5, "services[0].name", "'telemetry\\n' is not a valid name")],
    ),
    Case(
        "service-name-duplicate",
        two("name: telemetry-tcp", "name: telemetry"),
        [(13, "services[1].name", "service name 'telemetry' is used twice (first by services[0])")],
    ),
    Case(
        "service-endpoint-duplicate",
        two("protocol: tcp", "protocol: udp"),
        [(15, "services[1].port", "udp/5000 is already served by services[0] (telemetry)")],
    ),
    # --- interfaces ------------------------------------------------------------------------
    Case(
        "interface-name-16-bytes",
        edit("name: eth0", "name: abcdefghijklmnop"),
        [(3, "interfaces[0].name", "must be 1..15 bytes, not 16")],
    ),
    Case(
        "interface-name-multibyte",
        # 13 characters, 17 bytes: IFNAMSIZ counts bytes.
        edit("name: eth0", "name: ethernet-éééé"),
        [(3, "interfaces[0].name", "'ethernet-éééé' must be 1..15 bytes, not 17")],
    ),
    Case(
        "interface-name-empty",
        edit("name: eth0", 'name: ""'),
        [(3, "interfaces[0].name", "must be 1..15 bytes, not 0")],
    ),
    Case(
        "interface-name-slash",
        edit("name: eth0", "name: eth/0"),
        [(3, "interfaces[0].name", "must not contain '/', ':', whitespace or NUL")],
    ),
    Case(
        "interface-name-colon",
        edit("name: eth0", 'name: "eth0:1"'),
        [(3, "interfaces[0].name", "must not contain '/', ':'")],
    ),
    Case(
        "interface-name-space",
        edit("name: eth0", 'name: "eth 0"'),
        [(3, "interfaces[0].name", "'eth 0' must not contain")],
    ),
    Case(
        "interface-name-dot",
        edit("name: eth0", 'name: ".."'),
        [(3, "interfaces[0].name", "'..' is reserved by Linux")],
    ),
    Case(
        "interface-name-number",
        edit("name: eth0", "name: 0"),
        [(3, "interfaces[0].name", "must be a string, not 0")],
    ),
    Case(
        "interface-duplicate",
        edit("  - name: eth0\n", "  - name: eth0\n  - name: eth0\n    xdp_mode: generic\n"),
        [(4, "interfaces[1].name", "interface 'eth0' is listed twice (first as interfaces[0])")],
    ),
    # --- ports -----------------------------------------------------------------------------
    Case(
        "port-0",
        edit("port: 5000", "port: 0"),
        [(7, "services[0].port", "0 is out of range: must be at least 1")],
    ),
    Case(
        "port-65536",
        edit("port: 5000", "port: 65536"),
        [(7, "services[0].port", "65536 is out of range: must be at most 65535")],
    ),
    Case(
        "route-port-0",
        edit('"600": 5001', '"600": 0'),
        [(12, 'services[0].routes."600"', "0 is out of range: must be at least 1")],
    ),
    Case(
        "route-port-65536",
        edit('"600": 5001', '"600": 65536'),
        [(12, 'services[0].routes."600"', "must be at most 65535")],
    ),
    Case(
        "route-to-own-service-port",
        edit('"600": 5001', '"600": 5000'),
        [
            (
                12,
                'services[0].routes."600"',
                "service telemetry: route '600' -> 5000 targets the port of service telemetry",
            )
        ],
    ),
    Case(
        "route-to-other-service-port",
        edit('"600": 5001', '"600": 6000') + edit("port: 5000", "port: 6000", SECOND),
        [
            (
                12,
                'services[0].routes."600"',
                "service telemetry: route '600' -> 6000 targets the port of service telemetry-tcp",
            )
        ],
    ),
    # --- windows ---------------------------------------------------------------------------
    Case(
        "window-max-65536",
        edit("max: 294", "max: 65536"),
        [(9, "services[0].payload_length[0].max", "65536 is out of range: must be at most")],
    ),
    Case(
        "window-min-negative",
        edit("min: 290", "min: -1"),
        [(9, "services[0].payload_length[0].min", "-1 is out of range: must be at least 0")],
    ),
    Case(
        "window-min-greater-than-max",
        edit("{min: 290, max: 294}", "{min: 294, max: 290}"),
        [(9, "services[0].payload_length[0]", "service telemetry: window min 294 > max 290")],
    ),
    Case(
        "window-overlap",
        edit(
            "      - {min: 290, max: 294}\n",
            "      - {min: 290, max: 294}\n      - {min: 292, max: 300}\n",
        ),
        [
            (
                10,
                "services[0].payload_length[1]",
                "service telemetry: window 292..300 overlaps 290..294",
            )
        ],
    ),
    Case(
        "window-overlap-not-adjacent",
        edit(
            "      - {min: 290, max: 294}\n",
            "      - {min: 100, max: 400}\n      - {min: 150, max: 160}\n"
            "      - {min: 200, max: 210}\n",
        ),
        [
            (10, "services[0].payload_length[1]", "window 150..160 overlaps 100..400"),
            (11, "services[0].payload_length[2]", "window 200..210 overlaps 100..400"),
        ],
    ),
    Case(
        "window-identical",
        edit(
            "      - {min: 290, max: 294}\n",
            "      - {min: 290, max: 294}\n      - {min: 290, max: 294}\n",
        ),
        [(10, "services[0].payload_length[1]", "window 290..294 overlaps 290..294")],
    ),
    Case(
        "windows-empty",
        edit("    payload_length:\n      - {min: 290, max: 294}\n", "    payload_length: []\n"),
        [(8, "services[0].payload_length", "must hold at least 1 item(s)")],
    ),
    # --- tag -------------------------------------------------------------------------------
    Case(
        "tag-offset-negative",
        edit("offset: 20", "offset: -1"),
        [(10, "services[0].tag.offset", "-1 is out of range: must be at least 0")],
    ),
    Case(
        "tag-length-0",
        edit("length: 3", "length: 0"),
        [(10, "services[0].tag.length", "0 is out of range: must be at least 1")],
    ),
    Case(
        "tag-length-9",
        edit("length: 3", "length: 9"),
        [(10, "services[0].tag.length", "9 is out of range: must be at most 8")],
    ),
    Case(
        "tag-beyond-shortest-window",
        edit(
            "      - {min: 290, max: 294}\n",
            "      - {min: 300, max: 310}\n      - {min: 290, max: 294}\n",
        ).replace("offset: 20", "offset: 288"),
        [
            (
                11,
                "services[0].tag",
                "service telemetry: tag bytes 288..290 do not fit in the shortest payload of "
                "window 290..294 (tag.offset + tag.length = 291 > 290)",
            )
        ],
    ),
    Case(
        "tag-too-short",
        edit('"600"', '"60"'),
        [(12, 'services[0].routes."60"', "tag '60' has 2 character(s), tag.length is 3")],
    ),
    Case(
        "tag-too-long",
        edit('"600"', '"6000"'),
        [(12, 'services[0].routes."6000"', "tag '6000' has 4 character(s), tag.length is 3")],
    ),
    Case(
        "tag-empty",
        edit('"600"', '""'),
        [(12, 'services[0].routes.""', "tag '' has 0 character(s)")],
    ),
    Case(
        "tag-hex-too-few-digits",
        edit('"600"', '"hex:3630"'),
        [(12, 'services[0].routes."hex:3630"', "must be 'hex:' + 6 hex digits (tag.length 3)")],
    ),
    Case(
        "tag-hex-too-many-digits",
        edit('"600"', '"hex:36303030"'),
        [(12, 'services[0].routes."hex:36303030"', "must be 'hex:' + 6 hex digits")],
    ),
    Case(
        "tag-hex-not-hex",
        edit('"600"', '"hex:36303g"'),
        [(12, 'services[0].routes."hex:36303g"', "not '36303g'")],
    ),
    Case(
        "tag-hex-prefix-wins-over-text",
        # 8 printable characters, the tag length, yet read as hex: 2 bytes, wrong length.
        edit("length: 3", "length: 8").replace('"600"', '"hex:4142"'),
        [(12, 'services[0].routes."hex:4142"', "must be 'hex:' + 16 hex digits")],
    ),
    Case(
        "tag-non-printable",
        edit('"600"', '"\\x0160"'),
        [
            (
                12,
                'services[0].routes."\\u000160"',
                "tag '\\x0160' must be printable ASCII (write other bytes as hex:...)",
            )
        ],
    ),
    Case(
        "tag-non-ascii",
        edit('"600"', '"é60"'),
        [(12, 'services[0].routes."\\u00e960"', "must be printable ASCII")],
    ),
    Case(
        "tag-unquoted-number",
        edit('"600": 5001', "600: 5001"),
        [(12, 'services[0].routes."600"', 'tag 600 must be quoted ("600")')],
    ),
    Case(
        "tag-unquoted-octal",
        edit('"600": 5001', "0600: 5001"),
        [
            (12, 'services[0].routes."0600"', 'tag 0600 must be quoted ("0600")'),
            (12, 'services[0].routes."0600"', "tag '0600' has 4 character(s)"),
        ],
    ),
    Case(
        "tag-duplicate-after-decoding",
        edit("length: 3", "length: 2").replace(
            '      "600": 5001\n', '      "AB": 5001\n      "hex:4142": 5002\n'
        ),
        [
            (
                13,
                'services[0].routes."hex:4142"',
                "service telemetry: tag 'hex:4142' is the same tag as 'AB' (AB)",
            )
        ],
    ),
    Case(
        "tag-duplicate-hex-case",
        edit('      "600": 5001\n', '      "hex:0a0b0c": 5001\n      "hex:0A0B0C": 5002\n'),
        [(13, 'services[0].routes."hex:0A0B0C"', "is the same tag as 'hex:0a0b0c' (hex:0a0b0c)")],
    ),
    # --- routes ----------------------------------------------------------------------------
    Case(
        "no-routes-unmatched-drop",
        edit('    routes:\n      "600": 5001\n', "    routes: {}\n"),
        [(11, "services[0].routes", "no routes and unmatched: drop would drop every packet")],
    ),
    Case(
        "no-routes-key-unmatched-default",
        edit('    routes:\n      "600": 5001\n', ""),
        [(5, "services[0].routes", "add a route or set unmatched: pass")],
    ),
    # --- limits ----------------------------------------------------------------------------
    Case(
        "limits-routes-full",
        two() + "limits: {routes: 1}\n",
        [(5, "services", "route map full: 2 routes in all services exceed limits.routes = 1")],
    ),
    Case(
        "limits-services",
        two() + "limits:\n  services: 1\n",
        [(5, "services", "2 services exceed limits.services = 1")],
    ),
    Case(
        "limits-windows",
        edit(
            "      - {min: 290, max: 294}\n",
            "      - {min: 290, max: 294}\n      - {min: 300, max: 301}\n",
        )
        + "limits: {windows: 1}\n",
        [
            (
                9,
                "services[0].payload_length",
                "service telemetry: 2 windows exceed limits.windows = 1",
            )
        ],
    ),
    Case(
        "limits-routes-0",
        BASE + "limits: {routes: 0}\n",
        [(13, "limits.routes", "0 is out of range: must be at least 1")],
    ),
    Case(
        "limits-windows-too-big",
        BASE + "limits: {windows: 33}\n",
        [(13, "limits.windows", "33 is out of range: must be at most 32")],
    ),
    Case(
        "services-empty",
        "version: 1\ninterfaces: []\nservices: []\n",
        [(3, "services", "must hold at least 1 item(s)")],
    ),
    # --- several problems in one file, all reported, sorted by line --------------------------
    Case(
        "many-problems-sorted-by-line",
        two("port: 5000", "port: 70000")
        .replace("version: 1", "version: 3")
        .replace("name: eth0", "name: eth0/1")
        .replace("{min: 290, max: 294}", "{min: 295, max: 294}", 1)
        .replace('"600": 5001', "600: 5001", 1)
        + "bogus: true\n",
        [
            (1, "version", "must be 1, not 3"),
            (3, "interfaces[0].name", "must not contain '/'"),
            (9, "services[0].payload_length[0]", "window min 295 > max 294"),
            (12, 'services[0].routes."600"', "must be quoted"),
            (15, "services[1].port", "70000 is out of range"),
            (21, "bogus", "unknown key 'bogus'"),
        ],
    ),
    Case(
        "duplicate-key-and-semantic-problem",
        edit("    port: 5000\n", "    port: 5000\n    port: 5001\n"),
        [
            (8, "services[0].port", "key 'port' appears twice"),
            (13, 'services[0].routes."600"', "route '600' -> 5001 targets the port of service"),
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_invalid_config(case: Case, yaml_loader: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(case.text, FILE)
    problems = info.value.problems
    shown = "\n".join(problems)
    assert len(problems) == len(case.expected), shown
    for problem, (line, path, needle) in zip(problems, case.expected, strict=True):
        assert "\n" not in problem
        assert problem.startswith(f"{FILE}:{line}: {path}: "), shown
        assert needle in problem[len(f"{FILE}:{line}: {path}: ") :], shown
    assert str(info.value) == shown


def test_case_ids_are_distinct() -> None:
    ids = [c.id for c in CASES]
    texts = [c.text for c in CASES]
    assert len(set(ids)) == len(ids)
    assert len(set(texts)) == len(texts)
    assert len(CASES) >= 35


def test_problems_sorted_by_line() -> None:
    text = BASE.replace("port: 5000", "port: 0").replace("version: 1", "version: 9")
    with pytest.raises(ConfigError) as info:
        parse_config(text + "zzz: 1\naaa: 2\n", FILE)
    lines = [int(p.split(":")[1]) for p in info.value.problems]
    assert lines == sorted(lines) == [1, 7, 13, 14]


def test_exit_code_class() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("", FILE)
    assert info.value.exit_code == 2


def test_load_config_reports_file_name(tmp_path: pathlib.Path) -> None:
    from mplexctl.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(edit("port: 5000", "port: 0"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.problems == [
        f"{path}:7: services[0].port: 0 is out of range: must be at least 1"
    ]


def test_load_config_missing_file(tmp_path: pathlib.Path) -> None:
    from mplexctl.config import load_config

    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_load_config_directory(tmp_path: pathlib.Path) -> None:
    from mplexctl.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert info.value.problems[0].startswith(f"{tmp_path}: cannot read: ")


def test_load_config_not_utf8(tmp_path: pathlib.Path) -> None:
    from mplexctl.config import load_config

    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("eth0", "eth\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    (problem,) = info.value.problems
    line = BASE.splitlines().index(next(ln for ln in BASE.splitlines() if "eth0" in ln)) + 1
    assert problem.startswith(f"{path}:{line}: not a UTF-8 text file (byte 0xe9 at offset ")
    assert "codec" not in problem
