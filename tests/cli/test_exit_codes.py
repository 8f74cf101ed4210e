"""One exit-code table (mplexctl/errors.py): the README's table and `--help` are held to it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mplexctl import errors
from mplexctl.cli.main import build_parser

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def readme_table() -> list[tuple[int, str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Exit codes\n", 1)[1].strip().split("\n\n", 1)[0]
    rows = []
    for line in section.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append((int(cells[0]), cells[1], cells[2]))
    return rows


def test_readme_table_is_the_code_table() -> None:
    assert readme_table() == [(e.code, e.meaning, e.who) for e in errors.EXIT_CODES]


def test_help_epilog_is_rendered_from_the_table() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0
    assert build_parser().epilog == errors.exit_codes_epilog()
    flat = " ".join(r.stdout.split())
    for e in errors.EXIT_CODES:
        assert f"{e.code} {e.short}" in flat


def _classes(cls: type[errors.MplexError]) -> list[type[errors.MplexError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _classes(sub))]


def test_every_error_class_has_a_code_of_the_table_and_never_the_diff_code() -> None:
    codes = {e.code for e in errors.EXIT_CODES}
    for cls in _classes(errors.MplexError):
        assert cls.exit_code in codes, cls
        assert cls.exit_code not in (errors.EXIT_OK, errors.EXIT_DIFF), cls
    assert errors.MplexError.exit_code == errors.EXIT_INTERNAL


def test_codes_are_unique_and_sorted() -> None:
    codes = [e.code for e in errors.EXIT_CODES]
    assert codes == sorted(set(codes))
