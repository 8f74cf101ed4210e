"""A program the kernel will not take: the error quotes the compiler's first error or the end
of the verifier log (captured from fd 2, where libbcc prints them), never a traceback."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from mplexctl.backend import loader
from mplexctl.backend.loader import compile_and_load
from mplexctl.cli.main import main
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import parse_config
from mplexctl.errors import EXIT_KERNEL, KernelError
from tests.samples import BASE

# Test-only programs: the first compiles but reads the packet without a bounds check (the
# verifier refuses it); the second is not C.
UNCHECKED_READ = """\
#include <uapi/linux/bpf.h>
int mplex_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;

	return *(unsigned char *)data; /* no check against data_end */
}
"""
N_BAD = 12  # fewer than clang's limit of 20 errors
NOT_C = (
    "#include <uapi/linux/bpf.h>\n"
    "int mplex_xdp(struct xdp_md *ctx)\n{\n"
    + "".join(f"\tint v{i} = undeclared_{i};\n" for i in range(N_BAD))
    + "\treturn 0;\n}\n"
)
PROCESSED = re.compile(r"processed \d+ insns \(limit \d+\)")


def _build(source: str | None = None) -> Build:
    build = compile_config(parse_config(BASE))
    return build if source is None else dataclasses.replace(build, source=source)


def _detail(exc: pytest.ExceptionInfo[KernelError]) -> tuple[str, list[str]]:
    """The error's headline and the lines it quotes (each indented by two spaces)."""
    head, *quoted = str(exc.value).splitlines()
    assert quoted and all(ln.startswith("  ") for ln in quoted), quoted
    return head, [ln[2:] for ln in quoted]


@pytest.mark.kernel
def test_verifier_rejection_quotes_the_end_of_the_log() -> None:
    with pytest.raises(KernelError) as exc:
        compile_and_load(_build(UNCHECKED_READ))
    head, quoted = _detail(exc)
    assert head == "the kernel verifier rejected BPF program mplex_xdp; the end of its log:"
    assert "r0 = *(u8 *)(r1 +0)" in "\n".join(quoted)  # the refused instruction
    assert "; return *(unsigned char *)data; /* no check against data_end */" in quoted  # its C
    assert any(ln.startswith("invalid access to packet") for ln in quoted), quoted  # why
    assert PROCESSED.match(quoted[-1]), quoted
    assert 3 <= len(quoted) <= loader.VERIFIER_TAIL
    assert not any("Traceback" in ln or "bpf: Failed to load" in ln for ln in quoted)


@pytest.mark.kernel
def test_the_real_program_without_one_bounds_check_is_refused_with_the_reason() -> None:
    """What the program of a config looks like when the verifier refuses it: the mplex
    program with the second bounds check of mplex_read_tag (bpf/mplex_core.h) taken out."""
    build = _build()
    check = "if ((void *)(word + 1) > data_end)\n\t\treturn MPLEX_NOT_OURS;"
    assert build.source.count(check) == 1, "bpf/mplex_core.h changed: update this test"
    with pytest.raises(KernelError) as exc:
        compile_and_load(dataclasses.replace(build, source=build.source.replace(check, "")))
    _, quoted = _detail(exc)
    assert any(ln.startswith("invalid access to packet") for ln in quoted), quoted
    assert PROCESSED.match(quoted[-1]), quoted
    assert len(quoted) == loader.VERIFIER_TAIL  # the log is longer: its end only
    assert all(len(ln) <= loader.VERIFIER_WIDTH for ln in quoted)


@pytest.mark.kernel
def test_compile_error_quotes_the_first_compiler_error() -> None:
    with pytest.raises(KernelError) as exc:
        compile_and_load(_build(NOT_C))
    head, quoted = _detail(exc)
    assert head.startswith("BCC could not compile the program")
    # line 4 of NOT_C: "\tint v0 = undeclared_0;" (column 11 counts the tab as one)
    assert quoted[0] == "mplex.c:4:11: error: use of undeclared identifier 'undeclared_0'"
    assert quoted[1] == "        int v0 = undeclared_0;"  # clang's copy of the line
    assert quoted[2].strip() == "^"
    more = loader.COMPILER_ERRORS
    assert quoted[3 : 3 + more] == [
        f"mplex.c:{5 + i}:11: error: use of undeclared identifier 'undeclared_{1 + i}'"
        for i in range(more)
    ]
    assert quoted[-2:] == [f"... {N_BAD - 1 - more} more errors", f"{N_BAD} errors generated."]


@pytest.mark.kernel
def test_a_map_bcc_cannot_create_is_not_called_a_compile_error() -> None:
    source = UNCHECKED_READ.replace("int mplex_xdp", "BPF_ARRAY(empty, u64, 0);\nint mplex_xdp")
    with pytest.raises(KernelError) as exc:
        compile_and_load(_build(source))
    head, quoted = _detail(exc)
    assert head == "BCC could not load the compiled program:"
    assert quoted == ["could not open bpf map: empty, error: Invalid argument"]


@pytest.mark.kernel
def test_mplexctl_test_reports_a_verifier_rejection_in_one_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What an operator sees: `mplexctl test FILE` (compiles and loads, attaches nothing) when
    the program of FILE is refused: exit 5, the verifier's reason, no traceback."""
    monkeypatch.setattr("mplexctl.compiler.build.render_source", lambda header: UNCHECKED_READ)
    path = tmp_path / "mplex.yaml"
    path.write_text(BASE)
    assert main(["test", str(path)]) == EXIT_KERNEL
    out = capsys.readouterr()
    assert out.err.startswith("mplexctl: error: the kernel verifier rejected BPF program mplex_xdp")
    assert "invalid access to packet" in out.err
    assert PROCESSED.search(out.err)
    assert "Traceback" not in out.err + out.out


@pytest.mark.unit
def test_verifier_summary_keeps_the_end_cut_to_width() -> None:
    log = ["bpf: Failed to load program: Permission denied"]
    log += [f"{i}: (b7) r0 = {i}" for i in range(40)]
    log += ["5: R1=" + "x" * 1000, "invalid mem access 'scalar'", "processed 41 insns (limit 9)"]
    lines = loader.verifier_summary(log).split("\n  ")
    assert len(lines) == loader.VERIFIER_TAIL
    assert lines[-3:] == [
        "5: R1=" + "x" * (loader.VERIFIER_WIDTH - 9) + "...",
        "invalid mem access 'scalar'",
        "processed 41 insns (limit 9)",
    ]
    assert lines[0] == f"{43 - loader.VERIFIER_TAIL}: (b7) r0 = {43 - loader.VERIFIER_TAIL}"
    assert loader.verifier_summary([log[0]]) == "(the kernel printed no verifier log)"


@pytest.mark.unit
def test_captured_stderr_keeps_both_ends_of_a_long_output() -> None:
    """fd 2 itself is captured (libbcc writes there, not through sys.stderr); a megabyte of
    log keeps its first and last lines, and fd 2 is back afterwards."""
    before = os.fstat(2)
    lines = [f"line {i:07d}" for i in range(100_000)]
    with loader._captured_stderr() as printed:
        os.write(2, ("\n".join(lines) + "\n").encode())
    assert os.fstat(2).st_ino == before.st_ino
    assert printed.head[0] == lines[0] and printed.tail[-1] == lines[-1]
    assert printed.head == lines[: len(printed.head)]
    assert printed.tail == lines[-len(printed.tail) :]
    assert len(printed.tail) < len(lines) // 10
