"""What a verb is, for the CLI: its options, and the Report it returns.

A verb module (e.g. `cli/config_verbs.py`) defines `VERBS = (Verb(...), ...)`; `cli/main.py`
lists the modules' VERBS (one line per module). A verb never prints and never picks an exit
code for an error: it returns a Report, or raises an MplexError, and `cli/main.py` does the
rest the same way for every verb (README: "--json output").
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mplexctl.errors import EXIT_OK, Problem

Args = argparse.Namespace


@dataclass(frozen=True)
class Report:
    """The outcome of a verb that ran to its end.

    With --json the CLI prints {"failed", "exit_code", ["msg", "problems",] **data}; without
    it, `text` on stdout. Warnings go to stderr in both cases."""

    data: dict[str, Any] = field(default_factory=dict)  # the verb's own --json keys
    text: str = ""  # stdout without --json ("" prints nothing)
    exit_code: int = EXIT_OK
    failed: bool = False  # the verb failed (then `msg`, and `problems` when a file is wrong)
    msg: str = ""
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()  # one line each, printed as "mplexctl: warning: ..."


@dataclass(frozen=True)
class Verb:
    """One verb of the command line.

    `arguments` adds the verb's own positionals and options (the CLI adds --help, and --json /
    --netns as declared here). Import heavy modules inside `run`: start-up time counts."""

    name: str
    help: str
    run: Callable[[Args], Report]
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    netns: bool = False  # acts on the kernel in a network namespace: takes --netns
    json: bool = True  # has a --json document
    json_excludes: tuple[str, ...] = ()  # its options that cannot be combined with --json
    any_error: int | None = None  # every error exits with this code (diff: 2, as diff(1))
