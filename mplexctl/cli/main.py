"""mplexctl command line: the parser, and the one place where outcomes become output and exit
codes (never a traceback). Verbs live in their own modules (cli/verb.py says how)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from mplexctl import __version__
from mplexctl.cli import config_verbs, host_verbs, prove, render, takeback
from mplexctl.cli.verb import Args, Report, Verb
from mplexctl.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    ConfigError,
    HostError,
    MplexError,
    UsageError,
    exit_codes_epilog,
    from_os_error,
)

# Every verb, in --help order. A module adding verbs adds its VERBS here: one line.
VERBS: tuple[Verb, ...] = (
    *config_verbs.VERBS,
    *host_verbs.VERBS,
    *prove.VERBS,  # test, explain
    *takeback.VERBS,  # history, rollback, confirm
)

NETNS_HELP = "operate inside this named network namespace (as ip -n)"


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


# --- parser -----------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, usage=self.format_usage())

    def _print_message(self, message: str, file: Any = None) -> None:
        # argparse swallows write errors here; run() must see them (full disk, closed pipe)
        if message:
            (file or sys.stderr).write(message)


def _global_options(p: argparse.ArgumentParser, verb: Verb | None) -> None:
    """--netns and --json, accepted before the verb (`mplexctl --netns NS status`, as `ip -n`)
    and after it. After the verb they default to SUPPRESS, so as not to overwrite a value
    given before it."""
    default: dict[str, Any] = {} if verb is None else {"default": argparse.SUPPRESS}
    if verb is None or verb.netns:
        p.add_argument("--netns", metavar="NAME", help=NETNS_HELP, **default)
    if verb is None or verb.json:
        p.add_argument("--json", action="store_true", help="machine-readable output", **default)


def build_parser(verbs: tuple[Verb, ...] = VERBS) -> argparse.ArgumentParser:
    netns_verbs = ", ".join(v.name for v in verbs if v.netns)
    ap = _Parser(
        prog="mplexctl",
        description="Validate and re-route packets at line rate with XDP, from one YAML file. "
        f"Verbs that act in a network namespace (--netns): {netns_verbs}.",
        epilog=exit_codes_epilog(),
    )
    ap.add_argument("--version", action="version", version=f"mplexctl {__version__}")
    _global_options(ap, None)
    sub = ap.add_subparsers(dest="verb_name", metavar="VERB", required=True)
    for verb in verbs:
        p = sub.add_parser(verb.name, help=verb.help, description=verb.help)
        p.set_defaults(verb=verb)
        _global_options(p, verb)
        if verb.arguments is not None:
            verb.arguments(p)
    return ap


def _options_fit(parser: argparse.ArgumentParser, args: Args) -> None:
    """What argparse cannot see: a global option the verb does not take, and options that
    cannot be combined with --json given on the other side of the verb."""
    verb: Verb = args.verb
    if args.netns is not None and not verb.netns:
        parser.error(f"{verb.name} does not act in a network namespace: --netns does not apply")
    if args.json and not verb.json:
        parser.error(f"{verb.name} has no --json output")
    for dest in verb.json_excludes:
        if args.json and getattr(args, dest, False):
            parser.error(f"--json cannot be combined with --{dest.replace('_', '-')}")


def parse(argv: list[str]) -> Args:
    parser = build_parser()
    args = parser.parse_args(argv)
    _options_fit(parser, args)
    return args


# --- outcomes -> output and exit codes ---------------------------------------------------------
def _message(exc: MplexError, args: Args | None) -> str:
    msg = str(exc)
    if exc.hint is not None:
        flag, advice = exc.hint
        if args is not None and flag.lstrip("-").replace("-", "_") in vars(args):
            msg = f"{msg} ({advice})"
    return msg


def _failure(exc: MplexError, args: Args | None, code: int, as_json: bool) -> int:
    msg = _message(exc, args)
    problems = exc.items if isinstance(exc, ConfigError) else ()
    if problems:
        for p in problems:
            _err(p.text)
    else:
        _err(f"mplexctl: error: {msg}")
    if as_json:
        _out(render.document(failed=True, exit_code=code, msg=msg, problems=problems))
    return code


def _emit(report: Report, as_json: bool) -> int:
    for line in report.warnings:
        _err(f"mplexctl: warning: {line}")
    if as_json:
        _out(
            render.document(
                report.failed,
                report.exit_code,
                msg=report.msg,
                problems=report.problems,
                data=report.data,
            )
        )
        return report.exit_code
    for p in report.problems:
        _err(p.text)
    if report.text:
        _out(report.text)
    return report.exit_code


def _internal(exc: Exception, code: int, as_json: bool) -> int:
    if os.environ.get("MPLEXCTL_DEBUG"):
        raise exc
    msg = f"{type(exc).__name__}: {exc}"
    _err(f"mplexctl: internal error: {msg} (set MPLEXCTL_DEBUG=1 for details)")
    if as_json:
        _out(render.document(failed=True, exit_code=code, msg=f"internal error: {msg}"))
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parse(argv)
    except SystemExit as exc:  # --help, --version: printed; run() flushes and checks
        return int(exc.code or 0)
    except UsageError as exc:
        sys.stderr.write(exc.usage)
        return _failure(exc, None, exc.exit_code, "--json" in argv)
    verb: Verb = args.verb
    as_json = bool(args.json)
    try:
        if args.netns:
            from mplexctl.backend.host import enter_netns

            enter_netns(args.netns)
        for line in takeback.settle_first():  # an expired confirm window is reverted first
            _err(line)
        report = verb.run(args)
    except MplexError as exc:
        return _failure(exc, args, verb.any_error or exc.exit_code, as_json)
    except KeyboardInterrupt:
        _err("mplexctl: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (mplexctl status | head -1): say nothing
        return EXIT_PIPE
    except Exception as exc:  # a host problem in disguise (EPERM), else a bug: one line
        mapped = from_os_error(exc)
        if mapped is not None:
            return _failure(mapped, args, verb.any_error or mapped.exit_code, as_json)
        return _internal(exc, verb.any_error or EXIT_INTERNAL, as_json)
    return _emit(report, as_json)


def run() -> NoReturn:
    """The console script: main(), then exit without tearing the interpreter down (freeing a
    big apply's tables object by object costs time; see docs). Nothing is lost: output is
    flushed here, files are closed where they are written, the kernel closes the fds and
    releases the lock, and bcc's exit handlers only repeat the cleanup the loader did."""
    try:
        code = main()
    except BrokenPipeError:  # a write to stdout failed while printing: the reader went away
        code = EXIT_PIPE
    except OSError as exc:  # e.g. a full disk
        code = _cannot_write(exc)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (mplexctl status | head -1)
        code = code or EXIT_PIPE
    except OSError as exc:  # e.g. a full disk: the output is incomplete, say so
        code = code or _cannot_write(exc)
    os._exit(code)


def _cannot_write(exc: OSError) -> int:
    os.write(2, f"mplexctl: error: cannot write the output: {exc.strerror or exc}\n".encode())
    return HostError.exit_code
