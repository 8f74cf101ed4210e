"""`expect:` in the config: schema, semantic checks with lines, the model's verdicts."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mplexctl.compiler.build import compile_config
from mplexctl.config import parse_config
from mplexctl.config.expect import expect_valid
from mplexctl.config.schema import _schema_problems
from mplexctl.contract import expect as oracle
from mplexctl.contract.packet import build_frame
from mplexctl.engine.plan import plan, virtual_host
from mplexctl.errors import ConfigError

from .samples import EVERY_VERDICT, EXPECT_LINE, HEAD, config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
VERDICTS = {
    "rewrite",
    "pass",
    "pass_unmatched",
    "drop_length",
    "drop_unknown_tag",
    "drop_malformed",
    "drop_fragment",
}


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "f.yaml")
    return exc.value.problems


def test_every_verdict_is_reachable_in_an_expectation() -> None:
    cfg = parse_config(config(EVERY_VERDICT), "f.yaml")
    assert {e.verdict for e in cfg.expectations} == VERDICTS
    for exp in cfg.expectations:
        assert oracle.model_outcome(cfg, exp) == oracle.expected(exp), exp.label


@pytest.mark.parametrize("i", range(len(EVERY_VERDICT)))
def test_a_wrong_verdict_is_reported_with_its_line(i: int) -> None:
    """Each expectation, stated wrongly, fails alone: got the real outcome, on its line."""
    packet, verdict, port = EVERY_VERDICT[i]
    wrong = ("drop_length", None) if verdict != "drop_length" else ("rewrite", 5002)
    items = list(EVERY_VERDICT)
    items[i] = (packet, *wrong)
    got = f"rewrite to port {port}" if verdict == "rewrite" else verdict
    want = "rewrite to port 5002" if wrong[0] == "rewrite" else wrong[0]
    assert problems(config(items)) == [
        f"f.yaml:{EXPECT_LINE + 4 * i}: expect[{i}] (case {i}): got {got}, expected {want}"
    ]


def test_failed_expectations_are_reported_all_at_once_unnamed_too() -> None:
    items = [
        ('{protocol: udp, port: 5000, length: 292, tag: "601"}', "rewrite", 5001),
        ('{protocol: udp, port: 5000, length: 292, tag: "600"}', "rewrite", 5001),
        ('{protocol: udp, port: 5000, length: 295, tag: "600"}', "rewrite", 5001),
    ]
    assert problems(config(items, names=False)) == [
        f"f.yaml:{EXPECT_LINE}: expect[0]: got rewrite to port 5002, expected rewrite to port 5001",
        f"f.yaml:{EXPECT_LINE + 8}: expect[2]: got drop_length, expected rewrite to port 5001",
    ]


def test_validate_cli_exits_2_with_the_contract_message(tmp_path: Path) -> None:
    example = (ROOT / "configs" / "example.yaml").read_text()
    assert "expect:" in example
    bad = tmp_path / "site.yaml"
    bad.write_text(example.replace("    port: 5001\n", "    port: 5002\n", 1))
    line = next(n for n, t in enumerate(bad.read_text().splitlines(), 1) if "tag 600 reaches" in t)
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", "validate", str(bad)], capture_output=True, text=True
    )
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"{bad}:{line}: expect[0] (tag 600 reaches the first backend): "
        "got rewrite to port 5001, expected rewrite to port 5002"
    ]


CASES: list[tuple[str, str, str]] = [
    # (one expectation's lines, path in the problem, words of the problem)
    (
        '{protocol: udp, port: 5000, length: 292, tag: "600"}\n    verdict: rewrite',
        "expect[0]",
        "verdict rewrite needs port",
    ),
    (
        "{protocol: udp, port: 5000, length: 289}\n    verdict: drop_length\n    port: 7",
        "expect[0].port",
        "port is the new destination port of a rewrite; verdict is drop_length",
    ),
    (
        '{protocol: udp, port: 5000, length: 292, tag: "6000"}\n    verdict: pass',
        "expect[0].packet.tag",
        "service telemetry: tag '6000' has 4 character(s), tag.length is 3",
    ),
    (
        '{protocol: udp, port: 5000, length: 292, tag: "hex:ff"}\n    verdict: pass',
        "expect[0].packet.tag",
        "must be 'hex:' + 6 hex digits",
    ),
    (
        '{protocol: udp, port: 22, length: 40, tag: "600"}\n    verdict: pass',
        "expect[0].packet.tag",
        "no service listens on udp/22",
    ),
    (
        '{protocol: udp, port: 5000, length: 10, tag: "600"}\n    verdict: pass',
        "expect[0].packet.tag",
        "tag bytes 20..22 do not fit in a payload of 10 bytes",
    ),
    (
        '{protocol: udp, port: 5000, payload: "abc", length: 3}\n    verdict: pass',
        "expect[0].packet.payload",
        "give it without length and tag",
    ),
    (
        '{protocol: udp, port: 5000, payload: "hex:abc"}\n    verdict: pass',
        "expect[0].packet.payload",
        "an even number of hex digits",
    ),
    (
        "{protocol: udp, port: 5000}\n    verdict: pass",
        "expect[0].packet",
        "missing required key 'length'",
    ),
    (
        "{protocol: udp, port: 5000, length: 4000}\n    verdict: pass",
        "expect[0].packet",
        "more than the 3500 bytes a kernel test run takes",
    ),
    (
        "{protocol: udp, port: 5000, length: 4, truncate: 40}\n    verdict: pass",
        "expect[0].packet.truncate",
        "truncate may cut at most 32",
    ),
    (
        "{protocol: udp, port: 5000, length: 4, vlan: [1, 2, 3]}\n    verdict: pass",
        "expect[0].packet.vlan",
        "must hold at most 2 item(s)",
    ),
    (
        "{protocol: udp, port: 5000, length: 4, vlan: [4096]}\n    verdict: pass",
        "expect[0].packet.vlan[0]",
        "must be at most 4095",
    ),
    (
        "{protocol: udp, port: 5000, length: 4, ip: 5}\n    verdict: pass",
        "expect[0].packet.ip",
        "5 is not one of: 4 | 6",
    ),
    (
        "{protocol: sctp, port: 5000, length: 4}\n    verdict: pass",
        "expect[0].packet.protocol",
        "'sctp' is not one of: udp | tcp",
    ),
    (
        "{protocol: udp, port: 5000, length: 4, colour: red}\n    verdict: pass",
        "expect[0].packet.colour",
        "unknown key 'colour'",
    ),
    (
        "{protocol: udp, port: 5000, length: 4}\n    verdict: dropped",
        "expect[0].verdict",
        "'dropped' is not one of: rewrite | pass",
    ),
    (
        "{protocol: udp, port: 5000, length: 4, fragment: middle}\n    verdict: pass",
        "expect[0].packet.fragment",
        "'middle' is not one of: first | later",
    ),
    (
        '{protocol: udp, port: 5000, length: "292"}\n    verdict: pass',
        "expect[0].packet.length",
        "must be a number, not the string '292'",
    ),
]


@pytest.mark.parametrize(
    ("body", "path", "words"), CASES, ids=[c[1] + "-" + c[2][:20] for c in CASES]
)
def test_semantic_and_schema_problems_name_line_and_path(body: str, path: str, words: str) -> None:
    text = HEAD.replace("IFACE", "eth0") + "  - packet: " + body + "\n"
    (problem,) = problems(text)
    head, _, message = problem.partition(f": {path}: ")
    assert message, problem
    assert int(head.split(":")[1]) >= EXPECT_LINE, problem
    assert words in message, problem


def test_expect_must_be_a_list_of_mappings() -> None:
    assert "expect: must be a list" in problems(HEAD.replace("IFACE", "eth0") + "  {}\n")[0]
    assert "expect[0]: must be a mapping" in problems(HEAD.replace("IFACE", "eth0") + "  - 5\n")[0]


def test_expectations_change_neither_program_nor_maps_nor_plan() -> None:
    base = HEAD.replace("IFACE", "eth0").replace("expect:\n", "")
    without = compile_config(parse_config(base))
    with_ = compile_config(parse_config(config(EVERY_VERDICT)))
    assert with_.digest == without.digest and with_.source == without.source
    assert with_.maps_readable() == without.maps_readable()
    assert plan(with_, virtual_host(without, with_)).empty
    assert plan(without, virtual_host(with_, without)).empty


def _mutations(rng: random.Random, item: dict[str, Any]) -> dict[str, Any]:
    out = yaml.safe_load(yaml.safe_dump(item))
    target = out if rng.random() < 0.4 else out["packet"]
    key = rng.choice([*target.keys(), "bogus", "vlan", "ip", "truncate", "name", "port"])
    target[key] = rng.choice(
        [
            None,
            True,
            1.0,
            -1,
            0,
            4,
            6,
            4095,
            4096,
            65535,
            65536,
            "x",
            "udp",
            "later",
            [],
            [1],
            [1, 2, 3],
            {},
        ]
    )
    if rng.random() < 0.2:
        target.pop(rng.choice(list(target.keys())), None)
    return out


def test_fast_expect_check_agrees_with_jsonschema() -> None:
    """expect_valid() lets validate skip jsonschema for `expect:`; whenever it says valid,
    jsonschema finds nothing either; and it accepts every valid item of the samples."""
    doc = yaml.safe_load(config(EVERY_VERDICT))
    assert expect_valid(doc["expect"]) and not _schema_problems(doc)
    rng = random.Random(12)
    said_valid = 0
    for _ in range(3000):
        items = [_mutations(rng, rng.choice(doc["expect"]))]
        fast = expect_valid(items)
        slow = _schema_problems({**doc, "expect": items})
        assert not (fast and slow), (items, slow)
        said_valid += fast
        if not slow:  # jsonschema accepts: so must the fast check
            assert fast, items
    assert said_valid > 100


def test_test_packets_are_well_formed() -> None:
    """Independent of the model: IPv4 header and L4 checksums verify; lengths add up."""
    cfg = parse_config(config(EVERY_VERDICT))
    for exp in cfg.expectations:
        p = exp.packet
        if p.truncate or p.fragment:
            continue
        built = build_frame(cfg, p)
        f = built.frame
        l3 = 14 + 4 * len(p.vlan)
        payload = len(p.payload) if p.payload is not None else p.length
        l4_len = {"udp": 8, "tcp": 20}[p.protocol] + (payload or 0)
        assert len(f) == built.l4 + l4_len
        proto = {"udp": 17, "tcp": 6}[p.protocol]
        if p.ip == 4:
            assert _sum(f[l3 : l3 + 20]) == 0xFFFF
            pseudo = f[l3 + 12 : l3 + 20] + bytes([0, proto]) + l4_len.to_bytes(2, "big")
        else:
            pseudo = f[l3 + 8 : l3 + 40] + l4_len.to_bytes(4, "big") + bytes([0, 0, 0, proto])
        assert _sum(pseudo + f[built.l4 :]) == 0xFFFF, exp.label
        assert int.from_bytes(f[built.l4 + 2 : built.l4 + 4], "big") == p.port


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s
