"""The `expect:` fast lane gives exactly what the ordinary YAML path gives: data, the line of
every node and key, key flags, and errors; on generated blocks and on mutated ones."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mplexctl.accel import expectblocks
from mplexctl.config import locate_text
from mplexctl.config.yamlsrc import YamlSyntaxError, load_located
from tests.samples import BASE_HEAD
from tests.support.located import positions

pytestmark = pytest.mark.unit

HEAD = BASE_HEAD + '    routes:\n      "600": 5001\n      "601": 5002\n'
NAMES = ["tag 600 reaches the first backend", '"quoted: name # here"', "x", "a.b (c)", "it's"]
PACKETS = [
    '{protocol: udp, port: 5000, length: 292, tag: "600"}',
    "{protocol: tcp, port: 22, length: 40}",
    '{protocol: udp, port: 5000, length: 292, tag: "hex:ffffff", ip: 6, vlan: [100, 200]}',
    '{ protocol: udp , port: 5000, payload: "hex:00ff",vlan: [] }',
    "{protocol: udp, port: 5000, length: 292, fragment: first, truncate: 3}",
    "{}",
]
VERDICTS = ["rewrite", "pass", "drop_length", "drop_unknown_tag", "maybe"]


def view(text: str, lane: bool) -> Any:
    try:
        out = locate_text(text) if lane else load_located(text)
    except YamlSyntaxError as exc:
        return ("error", exc.line, exc.message)
    return positions(out)


def block(rng: random.Random, n: int, indent: int = 2) -> str:
    pad = " " * indent
    out = ["expect:" + rng.choice(["", "  ", "   # the checks"])]
    for _ in range(n):
        keys = [
            ("name", rng.choice(NAMES)),
            ("packet", rng.choice(PACKETS)),
            ("verdict", rng.choice(VERDICTS)),
            ("port", str(rng.choice([5001, 0, 65535, 123456]))),
        ]
        rng.shuffle(keys)
        keys = keys[: rng.randint(1, 4)]
        for j, (k, v) in enumerate(keys):
            lead = f"{pad}- " if j == 0 else f"{pad}  "
            tail = rng.choice(["", "", " # why", "  "])
            out.append(f"{lead}{k}: {v}{tail}")
            if rng.random() < 0.1:
                out.append(rng.choice(["", "# a comment", f"{pad}  # indented comment"]))
    return "\n".join(out) + "\n"


def text_for(rng: random.Random) -> str:
    body = block(rng, rng.randint(1, 6), rng.choice([0, 2, 2, 4]))
    after = rng.choice(["", "limits: {routes: 100}\n", "# end\n"])
    before = rng.random() < 0.3
    return body + HEAD + after if before else HEAD + body + after


MUTATIONS = [
    lambda s, i: s[:i] + s[i + 1 :],  # drop a character
    lambda s, i: s[:i] + s[i] + s[i:],  # double one
    lambda s, i: s[:i] + " " + s[i:],
    lambda s, i: s[:i] + "\t" + s[i:],
    lambda s, i: s[:i] + ": " + s[i:],
    lambda s, i: s[:i] + "#" + s[i:],
    lambda s, i: s[:i] + "\n" + s[i:],
    lambda s, i: s[:i] + "yes" + s[i:],
    lambda s, i: s[:i] + "0" + s[i:],
    lambda s, i: s[:i] + '"' + s[i:],
    lambda s, i: s[:i] + "- " + s[i:],
    lambda s, i: s[:i] + "expect:\n" + s[i:],
    lambda s, i: s[:i] + "{" + s[i:],
    lambda s, i: s[:i] + "," + s[i:],
    lambda s, i: s[:i] + "\u00e9" + s[i:],
]


def test_lane_reads_the_usual_block_and_agrees(yaml_loader: str) -> None:
    rng = random.Random(7)
    used = 0
    for _ in range(300):
        text = text_for(rng)
        assert view(text, True) == view(text, False), text
        used += expectblocks.split(text) is not None
    assert used > 200  # the lane really reads these


@pytest.mark.parametrize("seed", range(2))
def test_lane_agrees_on_mutated_texts(seed: int, yaml_loader: str) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(600):
        text = text_for(rng)
        start = text.index("expect:")
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(max(1, len(text) - 1))
            if rng.random() < 0.8:  # mostly inside the block
                i = rng.randrange(start, len(text) - 1)
            text = rng.choice(MUTATIONS)(text, i)
        assert view(text, True) == view(text, False), repr(text)


def test_lane_refuses_what_it_does_not_know() -> None:
    for body in (
        "expect:\n- name: x\n",  # dash at column 0
        "expect:\n  - name: yes\n",
        "expect:\n  - verdict: null\n",
        "expect:\n  - packet: {on: 1}\n",
        "expect:\n  - packet: {tag: hex:ff}\n",
        "expect:\n  - name: x\n    other: 1\n",
        "expect:\n  - name: x\n    name: y\n",
        "expect:\n  -   name: x\n",
        "expect: []\n",
        "expect:\n  - port: 05\n",
        "expect:\n  - name: a\n      b\n",
    ):
        text = HEAD + body
        assert expectblocks.split(text) is None, body
        assert view(text, True) == view(text, False)
