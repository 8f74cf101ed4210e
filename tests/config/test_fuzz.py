"""Garbage in, ConfigError out: mutated configs never raise anything else."""

from __future__ import annotations

import copy
import pathlib
import random
import re
from typing import Any

import pytest
import yaml

from mplexctl.config import Config, parse_config
from mplexctl.config.yamlsrc import line_count
from mplexctl.errors import ConfigError
from tests.support.located import paths as all_paths

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("accel")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "configs" / "example.yaml").read_text(encoding="utf-8")
FILE = "fuzz.yaml"
PROBLEM = re.compile(r"^fuzz\.yaml:(\d+): (\S[^\n]*?): ([^\n]+)$")

# Pieces of YAML syntax, odd scalars and odd characters that mutations insert.
_WORDS = """
    : - { } [ ] , # | > ' " \\ % @ ` ~ ? ! !! &a *a &b *b --- ... {} [] '' ""
    !!int !!float !!str !!binary !!timestamp !!bool !!null !!map !!seq !!set !!omap
    !foo <<: null true yes no on 0 -1 0x10 0o7 1e3 .inf .nan 1_000 60:00 2024-01-01
    65536 99999999999999999999999 hex: hex:41 routes tag port name limits version
"""
TOKENS = [
    *_WORDS.split(),
    *[": ", "- ", "\t", " ", "  ", "\n", "\n  ", "\n- ", "\x00", "\x01", "\x85", "\u2028"],
    *["\ufeff", "é", "%YAML 1.1\n---\n", "payload_length", "{min: 1, max: 2}"],
]

_PREFIXES = "!!int !!float !!str !!bool !!null !!binary !!timestamp !!map !!seq !!set !!omap !x"
VALUE_PREFIXES = [f"{p} " for p in [*_PREFIXES.split(), "&a", "&b", "*a", "*b", "&a [*a]"]]


def _mutate(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 4)):
        lines = text.split("\n")
        op = rng.randrange(9)
        if op == 0 and text:  # delete a span
            i = rng.randrange(len(text))
            text = text[:i] + text[i + rng.randint(1, 12) :]
        elif op == 1:  # insert a token
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif op == 2 and text:  # replace one character
            i = rng.randrange(len(text))
            text = text[:i] + rng.choice(TOKENS) + text[i + 1 :]
        elif op == 3:  # duplicate a line
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        elif op == 4:  # swap two lines
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
        elif op == 5:  # re-indent a line
            i = rng.randrange(len(lines))
            lines[i] = " " * rng.randint(0, 8) + lines[i].lstrip()
            text = "\n".join(lines)
        elif op == 6:  # truncate
            text = text[: rng.randrange(len(text) + 1)]
        elif op == 7:  # put a tag, an anchor or an alias in front of a value
            spots = [m.end() for m in re.finditer(r": |- ", text)] or [0]
            i = rng.choice(spots)
            text = text[:i] + rng.choice(VALUE_PREFIXES) + text[i:]
        else:  # change a number
            text = re.sub(
                r"\d+",
                lambda m: str(rng.choice([0, 1, 8, 9, 65535, 65536, -3])),
                text,
                count=rng.randint(1, 3),
            )
    return text


WEIRD: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    8,
    9,
    65535,
    65536,
    2**70,
    1.5,
    5000.0,
    float("nan"),
    "",
    "x",
    "5000",
    "hex:",
    "hex:zz",
    "\x01",
    "a" * 40,
    [],
    [1],
    [{}],
    {},
    {"min": 1},
    {"x": 1},
    {"600": 5001},
    [{"min": 1, "max": 0}],
]


def _replace(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    data = copy.deepcopy(data)
    node = data
    for part in path[:-1]:
        node = node[part]
    if isinstance(node, dict) and value is _DELETE:
        del node[path[-1]]
    elif value is not _DELETE:
        node[path[-1]] = value
    return data


_DELETE = object()


def _check(text: str) -> None:
    try:
        config = parse_config(text, FILE)
    except ConfigError as exc:
        assert exc.problems
        lines = []
        for problem in exc.problems:
            match = PROBLEM.match(problem)
            assert match, problem
            lines.append(int(match.group(1)))
        assert lines == sorted(lines), exc.problems
        assert min(lines) >= 1 and max(lines) <= line_count(text), exc.problems
    else:
        assert isinstance(config, Config)


def test_example_is_valid() -> None:
    _check(EXAMPLE)
    assert isinstance(parse_config(EXAMPLE), Config)


@pytest.mark.parametrize("seed", range(8))
def test_text_mutations(seed: int, yaml_loader: str) -> None:
    rng = random.Random(20240600 + seed)
    for _ in range(60):
        _check(_mutate(EXAMPLE, rng))


@pytest.mark.parametrize("seed", range(4))
def test_value_mutations(seed: int, yaml_loader: str) -> None:
    rng = random.Random(31337 + seed)
    data = yaml.safe_load(EXAMPLE)
    paths = all_paths(data)
    for _ in range(60):
        mutated = data
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(paths)
            try:
                mutated = _replace(mutated, path, rng.choice([*WEIRD, _DELETE]))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed the parent
        _check(yaml.safe_dump(mutated, allow_unicode=False))


def _billion_laughs() -> str:
    lines = ["l0: &l0 [lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]
    return "\n".join(lines) + "\n"


# id: (text, message substring or "" where the two YAML back ends word it differently)
PATHOLOGICAL = {
    "recursive-alias": ("a: &a [*a, *a]\n", "an alias refers to its own anchor"),
    "billion-laughs": (_billion_laughs(), "aliases (*name) expand to more than"),
    "deep-lists": ("x: " + "[" * 1500 + "]" * 1500 + "\n", ""),
    "deep-maps": ("x: " + "{a: " * 1500 + "1" + "}" * 1500 + "\n", ""),
    "deep-blocks": ("".join(" " * i + "k:\n" for i in range(60)), "nested deeper than 32"),
    "complex-key": ("? [a, b]\n: 1\n", "a mapping key must be a scalar"),
    "double-bom": ("\ufeff\ufeff", ""),
    "nel": ("\x85", "the file must hold a mapping"),
    "binary": ("!!binary AAAA", "the file must hold a mapping"),
    "empty-documents": ("---\n...\n---\n", ""),
    "custom-tag": ("%TAG ! tag:example.com,2000:\n--- !foo 1\n", "tag:example.com,2000:foo"),
    "set": ("version: 1\ninterfaces: []\nservices: !!set {a, b}\n", "tag !!set is not"),
    "omap": ("version: 1\ninterfaces: []\nservices: !!omap [a: 1]\n", "tag !!omap is not"),
}


@pytest.mark.parametrize("case", PATHOLOGICAL, ids=list(PATHOLOGICAL))
def test_pathological_yaml(case: str, yaml_loader: str) -> None:
    text, needle = PATHOLOGICAL[case]
    with pytest.raises(ConfigError) as info:
        parse_config(text, FILE)
    assert needle in "\n".join(info.value.problems)
    _check(text)
