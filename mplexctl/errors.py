"""One error hierarchy. Each class says who must act; the CLI maps classes to exit codes."""

from __future__ import annotations


class MplexError(Exception):
    """Base of every error mplexctl reports to a user (never shown as a traceback)."""

    exit_code = 1
    who = "operator"


class ConfigError(MplexError):
    """The configuration file is wrong: the author of the file must fix it."""

    exit_code = 2
    who = "config author"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(MplexError):
    """The command line is wrong."""

    exit_code = 2
    who = "operator"


class HostError(MplexError):
    """The host does not match the file (missing interface, netns, bpffs, headers)."""

    exit_code = 3
    who = "operator of the host"


class RefusedError(MplexError):
    """mplexctl refuses to act, to protect something it does not own (needs --force)."""

    exit_code = 4
    who = "operator (decide, then --force)"


class KernelError(MplexError):
    """The kernel refused an operation (compile, verifier, map update, attach)."""

    exit_code = 5
    who = "developer of mplexctl or kernel administrator"


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
    """Another mplexctl holds the lock for too long."""

    exit_code = 6
    who = "operator"


EXIT_OK = 0
EXIT_DIFF = 1  # diff found a difference (as diff(1))
EXIT_INTERNAL = 70  # a bug: reported in one line, never a traceback
EXIT_PIPE = 141  # the reader of stdout went away (as a tool killed by SIGPIPE: 128 + 13)
