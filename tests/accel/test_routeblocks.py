"""The fast lane for route blocks changes the speed of loading, never its result.

Every text is loaded twice: as parse_config loads it (the lane when it can, else the ordinary
path) and by the ordinary path alone (config/yamlsrc.py); data, lines of every node and key,
odd keys and errors must be equal.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from mplexctl.accel import routeblocks
from mplexctl.config import locate_text
from mplexctl.config.yamlsrc import YamlSyntaxError, load_located
from tests.config.test_fuzz import EXAMPLE, _mutate
from tests.samples import SERVICE_HEAD
from tests.support.located import positions

pytestmark = pytest.mark.unit

HEAD = SERVICE_HEAD


def _outcome(load: Any, text: str) -> tuple[str, Any]:
    try:
        return "ok", load(text)
    except YamlSyntaxError as exc:
        return "error", (exc.line, exc.message)


def assert_same(text: str) -> None:
    fast = _outcome(locate_text, text)
    slow = _outcome(load_located, text)
    assert fast[0] == slow[0], text
    if fast[0] == "error":
        assert fast[1] == slow[1], text
        return
    assert positions(fast[1]) == positions(slow[1]), text


def _route_line(rng: random.Random, indent: int, used: set[str]) -> str:
    body = "".join(rng.choice("0123456789abcXYZ -_.:/") for _ in range(rng.randint(0, 4)))
    if rng.random() < 0.95:
        body += str(len(used))  # mostly distinct keys; now and then a repeated one
    form = rng.randrange(4)
    key = {0: f'"{body}"', 1: f"'{body}'", 2: f"hex:{rng.randrange(1 << 24):06x}", 3: f'"{body}"'}
    text = key[form]
    used.add(text)
    port = str(rng.randint(1, 99999))
    tail = rng.choice(["", "", " ", "  # note", " #"])
    return " " * indent + text + ": " + port + tail


def _generated(rng: random.Random) -> str:
    lines = [HEAD.rstrip("\n"), "    routes:" + rng.choice(["", " ", "  # the table"])]
    indent = rng.choice([6, 6, 8, 5])
    used: set[str] = set()
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        if roll < 0.08:
            lines.append(rng.choice(["", "   ", "# comment", "      # indented comment"]))
        else:
            lines.append(_route_line(rng, indent, used))
    tails = ["    unmatched: drop", "  - name: second", "limits: {routes: 9}", ""]
    tails += ["    routes: {}", "    routes: 5", "services: 5", "services: {}"]  # repeated keys
    lines.append(rng.choice(tails))
    return "\n".join(lines) + rng.choice(["\n", ""])


def test_typical_files_take_the_lane() -> None:
    text = HEAD + '    routes:\n      "600": 5001\n      "hex:363031": 5002\n      \'602\': 5003\n'
    lane = routeblocks.split(text)
    assert lane is not None and len(lane.blocks) == 1
    block = next(iter(lane.blocks.values()))
    assert block.routes == {"600": 5001, "hex:363031": 5002, "602": 5003}
    assert "5001" not in lane.skeleton and lane.skeleton.count("\n") == text.count("\n")
    assert routeblocks.load_located(text) is not None
    assert_same(text)
    assert routeblocks.load_located(EXAMPLE) is not None
    assert_same(EXAMPLE)


def test_the_lane_is_off_with_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLEXCTL_ACCEL", "0")
    assert routeblocks.load_located(EXAMPLE) is None
    assert_same(EXAMPLE)


@pytest.mark.parametrize(
    "routes",
    [
        "      600: 5001\n",  # unquoted number: YAML reads an integer key
        '      "600": 05001\n',  # leading zero: octal in YAML 1.1
        '      "600": 5_001\n',  # underscore: still an integer in YAML 1.1
        '      "600": 5001\n      "600": 5002\n',  # repeated key
        '      "600": 5001\n     "601": 5002\n',  # entries at two indentations
        '      "600": 5001\n\t"601": 5002\n',  # a tab
        '      "6\\x30": 5001\n',  # an escape inside double quotes
        '      "600": &p 5001\n      "601": *p\n',  # anchors and aliases
        '      "600": 5001#no comment\n',  # "#" without a space belongs to the scalar
        '      "600" : 5001\n',  # a space before the colon
        '    "600": 5001\n',  # not deeper than the key
        '      "600": yes\n',  # not a port
    ],
)
def test_unusual_blocks_take_the_ordinary_path(routes: str) -> None:
    text = HEAD + "    routes:\n" + routes + "    unmatched: drop\n"
    lane = routeblocks.split(text)
    assert lane is None
    assert_same(text)


@pytest.mark.parametrize(
    "text",
    [
        # `routes:` inside a block scalar: the sentinel would land inside a string
        'note: |\n  routes:\n    "600": 5001\nversion: 1\n',
        # inside a flow mapping spanning lines
        'services: [{name: a,\n  routes:\n    "600": 5001\n  }]\n',
        # inside a multi-line quoted scalar
        'note: "a\n  routes:\n    \\"600\\": 5001\n  b"\n',
        # the key text itself written elsewhere as a value
        "a: mplexctl-route-block-0\n" + HEAD + '    routes:\n      "600": 5001\n',
        # a character YAML refuses, in a comment the lane would drop
        HEAD + '    routes:  # \x00\n      "600": 5001\n',
        HEAD + '    routes:\n      # \x01\n      "600": 5001\n',
        # a repeated key after the block replaces it, or one of its parents (review F1)
        'routes:\n  "a": 1\nroutes: x\n',
        's:\n  routes:\n    "a": 1\ns: {}\n',
        's:\n  routes:\n    "a": 1\ns: 5\n',
        # the block's entries deeper than MAX_DEPTH (review F2)
        "".join(" " * i + f"k{i}:\n" for i in range(31))
        + " " * 31
        + "routes:\n"
        + " " * 32
        + '"a": 1\n',
        # keys longer than YAML allows (review F3)
        'routes:\n  "' + "a" * 1023 + '": 1\n',
        "routes:\n  hex:" + "0" * 1021 + ": 1\n",
        # two documents
        HEAD + '    routes:\n      "600": 5001\n---\nx: 1\n',
    ],
)
def test_sentinel_checks_send_odd_texts_the_ordinary_way(text: str) -> None:
    assert routeblocks.load_located(text) is None
    assert_same(text)


def test_generated_blocks_match_the_ordinary_path() -> None:
    rng = random.Random(1)
    taken = 0
    for _ in range(400):
        text = _generated(rng)
        taken += routeblocks.load_located(text) is not None
        assert_same(text)
    assert taken > 150  # the lane was really taken (197 of these 400 texts)


def test_mutated_files_match_the_ordinary_path() -> None:
    rng = random.Random(2)
    base = [_generated(random.Random(n)) for n in range(20)] + [EXAMPLE]
    for _ in range(3000):
        assert_same(_mutate(rng.choice(base), rng))
