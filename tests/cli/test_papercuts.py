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
    stdin: bytes | None = None
    absent: tuple[str, ...] = ()  # words that must not appear (in stdout or stderr)


TYPO = b"""version: 1
interfaces:
  - name: eth0
services:
  - name: a
    protocol: udp
    port: 5000
    payload_lenght: [{min: 290, max: 294}]
    tag: {offset: 20, length: 3}
    routes: {"600": 5001}
"""
FILES = {
    "typo.yaml": TYPO,
    "tab.yaml": b"version: 1\ninterfaces:\n\t- name: eth0\n",
    "binary.yaml": b"version: 1\n\xce\xff\x00\x01",
}


def mplexctl(
    *argv: str, stdout: int | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", *argv],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        input=stdin,
        cwd=ROOT,
    )
    out = r.stdout.decode() if isinstance(r.stdout, bytes) else ""
    return subprocess.CompletedProcess(r.args, r.returncode, out, r.stderr.decode())


def assert_clean(r: subprocess.CompletedProcess[str]) -> None:
    for text in (r.stdout, r.stderr):
        assert "internal error" not in text and "Traceback" not in text, text


def run_case(case: Case, tmp: Path) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("@TMP@", str(tmp)) for a in case.argv]
    r = mplexctl(*argv, stdin=case.stdin)
    assert r.returncode == case.code, (argv, r.returncode, r.stderr, r.stdout)
    assert_clean(r)
    for word in case.absent:
        assert word not in r.stdout + r.stderr, (argv, r.stdout, r.stderr)
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
    "validate-missing-file": Case(("validate", "/nonexistent.yaml"), 2, ("cannot read",)),
    "validate-typo": Case(
        ("validate", "@TMP@/typo.yaml"),
        2,
        (
            "@TMP@/typo.yaml:8: services[0].payload_lenght: unknown key 'payload_lenght': "
            "did you mean 'payload_length'?",
        ),
        absent=("missing required key",),
    ),
    "validate-tab": Case(
        ("validate", "@TMP@/tab.yaml"),
        2,
        ("@TMP@/tab.yaml:3: (top): invalid YAML: tabs are not allowed for indentation",),
        absent=("cannot start any token",),
    ),
    "validate-binary": Case(
        ("validate", "@TMP@/binary.yaml"),
        2,
        ("@TMP@/binary.yaml:2: not a UTF-8 text file",),
        absent=("codec",),
    ),
    "validate-stdin": Case(
        ("validate", "-"), 0, ("<stdin>: valid",), True, TYPO.replace(b"lenght", b"length")
    ),
    "validate-stdin-invalid": Case(("validate", "-"), 2, ("<stdin>:8: services[0]",), stdin=TYPO),
    "validate-name": Case(
        ("validate", "--name", "site.yaml.j2 (as rendered)", "@TMP@/typo.yaml"),
        2,
        ("site.yaml.j2 (as rendered):8: services[0].payload_lenght",),
        absent=("typo.yaml",),
    ),
    "validate-tcp-warning": Case(
        ("validate", EXAMPLE),
        0,
        (
            "mplexctl: warning:",
            "services[1].protocol: a tcp service",
            "ordinary TCP connections to port 5000 fail",
        ),
    ),
    # 8. the plan says what it knows
    "diff-limits": Case(
        ("diff", EXAMPLE, "@TMP@/limits.yaml"),
        1,
        ("[program swap (counters restart)]", "limits.routes 65536 -> 1024"),
        True,
    ),
    "diff-windows": Case(
        ("diff", EXAMPLE, "@TMP@/windows.yaml"),
        1,
        ("[map update (service row swap)] service telemetry: windows 290..294 -> 290..296",),
        True,
        absent=(" ]",),
    ),
    "diff-interface-removed": Case(
        ("diff", EXAMPLE, "@TMP@/renamed.yaml"),
        1,
        ("veth-mplex0: [detach] detach mplex: not in the file",),
        True,
        absent=("id -1",),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(name: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    for fname, data in FILES.items():
        (tmp_path / fname).write_bytes(data)
    example = Path(EXAMPLE).read_text()
    (tmp_path / "limits.yaml").write_text(example + "limits: {routes: 1024}\n")
    (tmp_path / "windows.yaml").write_text(example.replace("max: 294", "max: 296"))
    (tmp_path / "renamed.yaml").write_text(example.replace("veth-mplex0", "veth-other0"))
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


def test_compile_out_into_a_read_only_directory_names_the_path() -> None:
    """As an ordinary user (root writes anywhere): PermissionError is a host problem, exit 3."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="mpxro-"))
    try:
        base.chmod(0o755)
        cfg = base / "example.yaml"
        shutil.copy(EXAMPLE, cfg)
        cfg.chmod(0o644)
        (base / "ro").mkdir(mode=0o555)
        (base / "ro").chmod(0o555)
        user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        argv = [*(user if os.geteuid() == 0 else []), sys.executable, "-m", "mplexctl"]
        r = subprocess.run(
            [*argv, "compile", "--out", str(base / "ro" / "out"), str(cfg)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert r.returncode == 3, r.stderr
        assert f"cannot create the output directory {base}/ro/out: Permission denied" in r.stderr
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)
