"""Compile and load the program with BCC (Debian's python3-bpfcc). The only bcc import."""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.compiler.build import Build
from mplexctl.errors import HostError, KernelError, MplexError, PrivilegeError

MAP_NAMES = (
    C.MAP_ACTIVE,
    C.MAP_SERVICES,
    C.MAP_ROUTES,
    C.MAP_ROUTE_CTR,
    C.MAP_SVC_STATS,
    C.MAP_META,
    C.MAP_SVC_INFO,
    C.MAP_IFSLOT,
    C.MAP_IFSLOT_HI,
    C.MAP_FLOWS,
    C.MAP_REPLIES,
)


@dataclass
class Loaded:
    """A freshly loaded, not yet attached program and its maps (fds owned by BCC)."""

    bpf: Any
    prog_fd: int  # the XDP entry (every generation has it)
    maps: dict[str, bpfsys.Map] = field(default_factory=dict)
    fds: dict[str, int] = field(default_factory=dict)  # program name -> fd, XDP included

    def close(self) -> None:
        """Drop user-space references; an attached program keeps itself and its maps."""
        self.bpf.cleanup()


#: how much of what BCC prints on fd 2 an error message may quote, from each end
_WINDOW = 64 * 1024
#: verifier log lines an error keeps (its end: the refused instruction, the reason, the
#: "processed N insns" line)
VERIFIER_TAIL = 20
#: a verifier line keeps this many characters (register state dumps run to 2,000)
VERIFIER_WIDTH = 200
#: compiler diagnostics an error keeps after the first one (which keeps its source line)
COMPILER_ERRORS = 8


@dataclass
class _Printed:
    """What BCC, libbcc and libbpf printed on fd 2 during one step: its first and last
    _WINDOW bytes (a rejected big program can print megabytes of verifier log)."""

    head: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)


@contextmanager
def _captured_stderr() -> Iterator[_Printed]:
    """libbcc writes compiler diagnostics and the verifier log to fd 2 itself: point fd 2 at
    a temporary file for the step and keep the text for the error message. The text is
    there once the `with` block has ended (raise after it, not inside it)."""
    import tempfile  # only a compile needs it

    printed = _Printed()
    if sys.stderr is not None:  # Python's own pending text is not BCC's
        sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield printed
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            size = tmp.seek(0, os.SEEK_END)
            tmp.seek(0)
            head = _lines(tmp.read(_WINDOW))
            tmp.seek(max(0, size - _WINDOW))
            tail = _lines(tmp.read())
            cut = size > _WINDOW  # then the window's edge cut a line in two: drop its part
            printed.head = head[:-1] if cut else head
            printed.tail = tail[1:] if cut else tail


def _lines(raw: bytes) -> list[str]:
    return [ln.rstrip() for ln in raw.decode(errors="replace").splitlines() if ln.strip()]


def _headers_present() -> bool:
    return os.path.isdir(f"/lib/modules/{os.uname().release}/build/include")


def _compile_error(printed: list[str]) -> KernelError:
    if any(map(_is_error, printed)):
        return KernelError(
            "BCC could not compile the program (mplex.c as `mplexctl compile FILE --emit` "
            f"prints it):\n  {compiler_summary(printed)}"
        )
    # the compiler was content; BCC failed after it (creating a map, loading the module)
    said = "\n  ".join(printed[-COMPILER_ERRORS:]) or "(it printed nothing)"
    return KernelError(f"BCC could not load the compiled program:\n  {said}")


def compiler_summary(lines: list[str], limit: int = COMPILER_ERRORS) -> str:
    """clang's first error with its source and caret lines, up to `limit` more error lines
    and its "N errors generated." line."""
    first = next(i for i, ln in enumerate(lines) if _is_error(ln))
    lines = [ln.replace(_BCC_FILE, "mplex.c:") for ln in lines]
    keep = [lines[first]]
    for ln in lines[first + 1 : first + 4]:  # the source line, the caret, a fix-it
        if _is_diagnostic(ln):
            break
        keep.append(ln)
    more = [ln for ln in lines[first + 1 :] if _is_error(ln)]
    keep += more[:limit]
    if len(more) > limit:
        keep.append(f"... {len(more) - limit} more errors")
    keep += [ln for ln in lines if ln.endswith(" generated.")][-1:]
    return "\n  ".join(keep)


_BCC_FILE = "/virtual/main.c:"  # the name BCC gives the source it compiles


def _is_error(line: str) -> bool:
    return ": error: " in line or ": fatal error: " in line


def _is_diagnostic(line: str) -> bool:
    return any(f": {kind}: " in line for kind in ("error", "fatal error", "warning", "note"))


def verifier_summary(lines: list[str], limit: int = VERIFIER_TAIL) -> str:
    """The end of the verifier log: the instructions before the refusal, the reason, the
    "processed N insns" line and BCC's hints. libbcc's own headline ("bpf: Failed to load
    program: <errno>") is left out: the message says it in its own words, and so are the
    line numbers of BCC's rewritten source (" @ main.c:N": no file a user has; the source
    line itself is quoted)."""
    log = [
        _cut(_BCC_LINE.sub("", ln))
        for ln in lines
        if not ln.startswith("bpf: Failed to load program")
    ]
    return "\n  ".join(log[-limit:]) or "(the kernel printed no verifier log)"


_BCC_LINE = re.compile(r" @ main\.c:\d+$")


def _cut(line: str, width: int = VERIFIER_WIDTH) -> str:
    """A verifier line with its register and stack state cut to `width` characters."""
    return line if len(line) <= width else line[: width - 3] + "..."


def _declared(bpf: Any, name: str) -> bool:
    """Whether the program declares map `name` (a previous release's program lacks some)."""
    try:
        bpf.get_table(name.encode())
    except KeyError:
        return False
    return True


def compile_and_load(build: Build) -> Loaded:
    """Run the BPF compiler on build.source and load the program (verifier included)."""
    if not _headers_present():
        raise HostError(
            f"kernel headers for BCC are missing (/lib/modules/{os.uname().release}/build): "
            "run `make setup` (falls back to Debian's generic headers)"
        )
    try:
        from bcc import BPF
    except ImportError:
        raise HostError("python3-bpfcc is not installed (apt-get install python3-bpfcc)") from None
    with _captured_stderr() as printed:
        try:
            bpf = BPF(text=build.source.encode(), cflags=["-Wno-unused-function"])
        except Exception:
            bpf = None
    if bpf is None:
        raise _compile_error(printed.head)
    fds: dict[str, int] = {}
    for prog in build.programs:
        kind = BPF.XDP if prog == C.PROG_NAME else BPF.SCHED_CLS
        with _captured_stderr() as printed:
            try:
                fds[prog] = bpf.load_func(prog.encode(), kind).fd
                failed: Exception | None = None
            except Exception as exc:
                failed = exc
        if failed is not None:
            bpf.cleanup()
            raise _load_error(prog, failed, printed.tail)
    loaded = Loaded(bpf=bpf, prog_fd=fds[C.PROG_NAME], fds=fds)
    for name in MAP_NAMES:
        if _declared(bpf, name):
            fd = bpf.get_table(name.encode()).get_fd()
            loaded.maps[name] = bpfsys.Map(fd, owned=False)
    # Every entry holds every map (those its code does not use are bound): any program of a
    # generation leads a later process to all of its maps, and the maps live as long as one
    # of its programs is attached.
    for fd in fds.values():
        for m in loaded.maps.values():
            bpfsys.prog_bind_map(fd, m.fd)
    return loaded


#: bcc's errno text after a failed load, in the verifier's words ("" when "rejected" says it)
_ERRNO_WORDS = {
    os.strerror(errno.EACCES): "",
    os.strerror(errno.EINVAL): "invalid program",
    os.strerror(errno.E2BIG): "program too large",
    os.strerror(errno.ENOSPC): "verifier log too large",
    os.strerror(errno.ENOMEM): "out of memory",
}


def _load_error(prog: str, exc: Exception, log: list[str]) -> MplexError:
    """The error for a program the kernel would not load, with the end of its verifier log."""
    text = str(exc)
    if "super-user" in text:  # bcc's words for EPERM
        return PrivilegeError(f"loading BPF program {prog}")
    reason = text.rpartition(": ")[2] or text  # bcc: "Failed to load BPF program b'x': <errno>"
    words = _ERRNO_WORDS.get(reason, reason)
    return KernelError(
        f"the kernel verifier rejected BPF program {prog}{f' ({words})' if words else ''}; "
        f"the end of its log:\n  {verifier_summary(log)}"
    )
