"""The operator papercuts of issue #15, as a table: each command's exit code, the key words of
its message, and never `internal error` or a traceback. Kernel cases: test_cli_kernel.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mplexctl.errors import NEEDS_ROOT

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "configs" / "example.yaml")
NO_NS = "mpx-no-such-netns-0"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    code: int
    words: tuple[str, ...]  # each must appear in stderr (or stdout, for stdout=True)
    stdout: bool = False


def mplexctl(*argv: str, stdout: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mplexctl", *argv],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def assert_clean(r: subprocess.CompletedProcess[str]) -> None:
    for text in (r.stdout, r.stderr):
        assert "internal error" not in text and "Traceback" not in text, text


def run_case(case: Case, tmp: Path) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("@TMP@", str(tmp)) for a in case.argv]
    r = mplexctl(*argv)
    assert r.returncode == case.code, (argv, r.returncode, r.stderr, r.stdout)
    assert_clean(r)
    where = r.stdout if case.stdout else r.stderr
    for word in case.words:
        assert word.replace("@TMP@", str(tmp)) in where, (argv, where)
    return r


CASES = {
    # 2. host problems, not bugs: compile --out where it cannot write
    "compile-out-onto-a-file": Case(
        ("compile", "--out", "@TMP@/file", EXAMPLE),
        3,
        ("cannot create the output directory @TMP@/file", "File exists"),
    ),
    "compile-out-under-a-file": Case(
        ("compile", "--out", "@TMP@/file/sub", EXAMPLE),
        3,
        ("@TMP@/file/sub", "Not a directory"),
    ),
    "compile-out-unwritable": Case(
        ("compile", "--out", "/proc/self/mpx-out", EXAMPLE),
        3,
        ("cannot create the output directory /proc/self/mpx-out",),
    ),
    # 3. status of an unknown interface is what detach says
    "status-unknown-interface": Case(
        ("status", "nosuch0"), 3, ("interface nosuch0 does not exist",)
    ),
    "detach-unknown-interface": Case(
        ("detach", "nosuch0"), 3, ("interface nosuch0 does not exist",)
    ),
    # 4. diff: exit 2 on any error
    "diff-missing-netns": Case(
        ("diff", "--netns", NO_NS, EXAMPLE), 2, (f"'{NO_NS}' does not exist",)
    ),
    "diff-missing-file": Case(("diff", "/nonexistent.yaml"), 2, ("cannot read",)),
    # 5. --netns only where it means something
    "schema-netns": Case(("schema", "--netns", "nosuch"), 2, ("unrecognized arguments: --netns",)),
    "validate-netns": Case(("validate", "--netns", "nosuch", EXAMPLE), 2, ("--netns",)),
    "compile-netns-before": Case(
        ("--netns", "missing", "compile", EXAMPLE),
        2,
        ("compile does not act in a network namespace",),
    ),
    # 6. conflicting flags
    "compile-emit-json": Case(
        ("compile", "--emit", "--json", EXAMPLE), 2, ("--json cannot be combined with --emit",)
    ),
    "compile-json-before-emit": Case(
        ("--json", "compile", "--emit", EXAMPLE), 2, ("--json cannot be combined with --emit",)
    ),
    "status-json-prometheus": Case(
        ("status", "--json", "--prometheus"), 2, ("--json cannot be combined with --prometheus",)
    ),
    "schema-json": Case(("--json", "schema"), 2, ("schema has no --json output",)),
    # global options before the verb (as ip -n NS link)
    "netns-before-verb": Case(("--netns", NO_NS, "status"), 3, (f"'{NO_NS}' does not exist",)),
    "json-before-verb": Case(("--json", "diff", EXAMPLE, EXAMPLE), 0, ('"changed": false',), True),
    # 10. validation nits
    "validate-stdin-missing-file": Case(("validate", "/nonexistent.yaml"), 2, ("cannot read",)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    run_case(CASES[name], tmp_path)


# --- 1. output that cannot be written -----------------------------------------------------------
WRITERS = [
    ("validate", EXAMPLE),
    ("compile", EXAMPLE),
    ("compile", "--json", EXAMPLE),
    ("schema",),
    ("diff", EXAMPLE, EXAMPLE),
    ("--help",),
    ("--version",),
    ("status", "--help"),
]


@pytest.mark.parametrize("argv", WRITERS, ids=" ".join)
def test_full_disk_is_exit_3_with_a_message(argv: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        r = mplexctl(*argv, stdout=full.fileno())
    assert r.returncode == 3, r.stderr
    # (validate's warning about the example's tcp service may come first)
    assert r.stderr.endswith("mplexctl: error: cannot write the output: No space left on device\n")
    assert r.stderr.count("error") == 1


@pytest.mark.parametrize("argv", WRITERS, ids=" ".join)
def test_closed_pipe_is_141_quietly(argv: tuple[str, ...]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before mplexctl writes (as `mplexctl ... | true`)
    try:
        r = mplexctl(*argv, stdout=write_end)
    finally:
        os.close(write_end)
    assert r.returncode == 141
    assert all(ln.startswith("mplexctl: warning: ") for ln in r.stderr.splitlines()), r.stderr


def test_needs_root_message_is_one_sentence() -> None:
    assert NEEDS_ROOT.startswith("permission denied: run mplexctl as root")
    assert "CAP_BPF" in NEEDS_ROOT and "CAP_NET_ADMIN" in NEEDS_ROOT
