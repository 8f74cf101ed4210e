"""One error hierarchy and the one exit-code table.

Each error class says who must act (its docstring and its row in EXIT_CODES); the CLI maps
classes to exit codes through `exit_code`, renders the `--help` epilog from EXIT_CODES, and a
test holds the README's table to it.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ExitCode:
    code: int
    meaning: str  # as the README's table writes it (Markdown)
    who: str  # who acts
    short: str  # for `--help`


EXIT_OK = 0
EXIT_DIFF = 1  # diff found a difference (as diff(1)); test: an expectation failed
EXIT_USAGE = 2  # invalid config or command line; any error of `diff` (as diff(1))
EXIT_HOST = 3
EXIT_REFUSED = 4
EXIT_KERNEL = 5
EXIT_LOCK = 6
EXIT_INTERNAL = 70  # a bug: reported in one line, never a traceback (as sysexits' EX_SOFTWARE)
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports it
EXIT_PIPE = 141  # the reader of stdout went away (as a tool killed by SIGPIPE: 128 + 13)

EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "success (for `diff`: no difference)", "—", "ok"),
    ExitCode(
        EXIT_DIFF,
        "`diff` found a difference; `test`: an expectation failed in the kernel",
        "—",
        "diff found a difference / test: an expectation failed",
    ),
    ExitCode(
        EXIT_USAGE,
        "invalid config or command line (`diff`: any error, as diff(1))",
        "config author",
        "invalid config or usage",
    ),
    ExitCode(
        EXIT_HOST,
        "host problem: interface or netns missing, headers missing, driver lacks native XDP, "
        "not run as root, output that cannot be written",
        "host operator",
        "host problem",
    ),
    ExitCode(
        EXIT_REFUSED,
        "refused: an interface carries an XDP program mplex did not attach (`--force` to replace)",
        "operator",
        "refused (foreign program)",
    ),
    ExitCode(
        EXIT_KERNEL,
        'the kernel refused: compile, verifier, map update (e.g. "route map full"), attach; '
        "or a new program does not meet the file's `expect:` in the kernel (nothing changed)",
        "developer / admin",
        "kernel refused",
    ),
    ExitCode(
        EXIT_LOCK, "another mplexctl held the lock for more than 120 s", "operator", "lock busy"
    ),
    ExitCode(
        EXIT_INTERNAL,
        "internal error (a bug): one line, no traceback; `MPLEXCTL_DEBUG=1` shows it",
        "developer",
        "internal error",
    ),
    ExitCode(
        EXIT_INTERRUPTED,
        "interrupted (Ctrl-C), as a shell reports SIGINT",
        "—",
        "interrupted",
    ),
    ExitCode(
        EXIT_PIPE,
        "stdout was closed by its reader (`mplexctl status \\| head -1`), as a tool killed by "
        "SIGPIPE; nothing printed",
        "—",
        "stdout closed by its reader",
    ),
)


def exit_codes_epilog() -> str:
    """The `--help` epilog: rendered from EXIT_CODES, never written out by hand."""
    return "exit codes: " + ", ".join(f"{e.code} {e.short}" for e in EXIT_CODES)


@dataclass(frozen=True)
class Problem:
    """One problem (or warning) in a config file: where it is and what is wrong.

    `line` and `path` are None when the problem is about the whole file (it cannot be read)."""

    file: str | None
    line: int | None
    path: str | None
    message: str

    @property
    def text(self) -> str:
        """FILE:LINE: PATH: message (the parts that are known)."""
        where = ":".join(str(p) for p in (self.file, self.line) if p is not None)
        parts = [p for p in (where, self.path) if p]
        return ": ".join([*parts, self.message])

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class MplexError(Exception):
    """Base of every error mplexctl reports to a user (never shown as a traceback).

    Only subclasses are raised; the base maps to the internal-error code, so that an error
    nobody classified can never pass for a diff result (exit 1)."""

    exit_code = EXIT_INTERNAL
    #: advice that needs a command-line option (e.g. "--force"): the CLI shows it only on
    #: verbs that take that option
    hint: tuple[str, str] | None = None

    def __init__(self, message: str, *, hint: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class ConfigError(MplexError):
    """The configuration file is wrong: the author of the file must fix it."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: Sequence[Problem | str]) -> None:
        self.items = tuple(
            p if isinstance(p, Problem) else Problem(None, None, None, p) for p in problems
        )
        self.problems = [p.text for p in self.items]
        super().__init__("\n".join(self.problems))


class UsageError(MplexError):
    """The command line is wrong: the operator must fix the command."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage  # the verb's usage line(s), printed before the message


class HostError(MplexError):
    """The host does not match the file (missing interface, netns, bpffs, headers, privileges,
    an output that cannot be written): the operator of the host must act."""

    exit_code = EXIT_HOST


NEEDS_ROOT = "permission denied: run mplexctl as root (it needs CAP_BPF and CAP_NET_ADMIN)"
PERMISSION_ERRNOS = (errno.EPERM, errno.EACCES)


class PrivilegeError(HostError):
    """mplexctl runs without the privileges it needs (bpf(2), netlink, the lock file)."""

    def __init__(self, doing: str = "") -> None:
        super().__init__(NEEDS_ROOT + (f" ({doing})" if doing else ""))


class RefusedError(MplexError):
    """mplexctl refuses to act, to protect something it does not own: the operator decides,
    then passes --force."""

    exit_code = EXIT_REFUSED


class KernelError(MplexError):
    """The kernel refused an operation (compile, verifier, map update, attach): the developer
    of mplexctl or the kernel administrator must act."""

    exit_code = EXIT_KERNEL


class ExpectationError(KernelError):
    """A program prepared for attach does not do in the kernel what the file's `expect:` says
    (the model agreed, or validate would have stopped the file): nothing was changed."""

    def __init__(self, failures: list[str], where: str) -> None:
        self.failures = failures
        super().__init__(
            f"{where}: the new program does not meet the file's expectations in the kernel "
            "(BPF_PROG_TEST_RUN); nothing changed:\n" + "\n".join(failures)
        )


class LockError(MplexError):
    """Another mplexctl holds the lock for too long: the operator must find out why."""

    exit_code = EXIT_LOCK


def from_os_error(exc: BaseException) -> MplexError | None:
    """The domain error an OSError that escaped the edges stands for, or None (a bug).

    Any EPERM/EACCES (bpf(2), netlink, the lock file) means mplexctl lacks privileges."""
    code = getattr(exc, "errno", None)
    if code is None:
        code = getattr(exc, "code", None)  # pyroute2's NetlinkError
    if code in PERMISSION_ERRNOS:
        return PrivilegeError(_doing(exc))
    return None


def _doing(exc: BaseException) -> str:
    """What was refused: the file, or the bpf(2) operation."""
    filename = getattr(exc, "filename", None)
    if filename:
        return str(filename)
    op = getattr(exc, "op", None)
    return f"bpf(2) {op}" if op else ""
