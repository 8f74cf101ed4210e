"""mplexctl command line. Errors map to exit codes here, in one place; never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from mplexctl import __version__
from mplexctl.cli import prove, render
from mplexctl.errors import (
    EXIT_DIFF,
    EXIT_INTERNAL,
    EXIT_PIPE,
    ConfigError,
    HostError,
    MplexError,
)

Handler = Callable[[argparse.Namespace], int]


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")


# --- verbs ------------------------------------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    from mplexctl.config import load_config

    results, worst = {}, 0
    for path in args.files:
        try:
            load_config(path)
            results[path] = {"valid": True, "problems": []}
            if not args.json:
                _out(f"{path}: valid")
        except ConfigError as exc:
            results[path] = {"valid": False, "problems": exc.problems}
            worst = ConfigError.exit_code
            for line in exc.problems:
                _err(line)
    if args.json:
        _out(render.to_json(results))
    return worst


def cmd_compile(args: argparse.Namespace) -> int:
    from mplexctl.compiler.build import compile_config
    from mplexctl.config import load_config

    build = compile_config(load_config(args.file))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "mplex_config.h").write_text(build.header)
        (out / "mplex.c").write_text(build.source)
        (out / "maps.json").write_text(render.to_json(build.maps_readable()) + "\n")
        if not args.json:
            _out(
                f"wrote {out}/mplex_config.h, {out}/mplex.c, {out}/maps.json "
                f"(generation {build.generation})"
            )
    if args.json:
        _out(
            render.to_json(
                {
                    "generation": build.generation,
                    "digest": build.digest,
                    "program_digest": build.program_digest,
                    "defines": dict(build.defines),
                    "header": build.header,
                    "maps": build.maps_readable(),
                }
            )
        )
    elif args.emit:
        sys.stdout.write(build.source)
    elif not args.out:
        sys.stdout.write(render.maps_text(build))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from mplexctl.config.schema import schema_text

    sys.stdout.write(schema_text())
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from mplexctl.engine.apply import apply

    result = apply(args.file, check=args.check, force=args.force)
    if args.json:
        _out(render.to_json(result.as_dict()))
        return 0
    _out(render.plan_text(result.plan))
    for note in result.notes:
        _out(note)
    if result.check:
        _out("check mode: nothing changed")
    elif result.changed:
        _out(f"applied generation {result.generation}; verified (re-probe: no changes)")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from mplexctl.compiler.build import compile_config
    from mplexctl.config import load_config
    from mplexctl.engine.apply import check_applicable, plan_file
    from mplexctl.engine.plan import plan, virtual_host

    try:
        if args.new:
            old = compile_config(load_config(args.file))
            new = compile_config(load_config(args.new))
            p = plan(new, virtual_host(old, new))
        else:
            p = plan_file(args.file)
            check_applicable(p)
    except MplexError as exc:
        _report(exc, args.json)
        return 2  # as diff(1): trouble
    if args.json:
        _out(
            render.to_json(
                {"different": not p.empty, "generation": p.generation, "plan": p.as_list()}
            )
        )
    else:
        _out(render.plan_text(p))
    return EXIT_DIFF if not p.empty else 0


def cmd_status(args: argparse.Namespace) -> int:
    from mplexctl.engine.status import status

    rows = status(args.interfaces or None)
    if args.json:
        _out(render.to_json([r.as_dict() for r in rows]))
    elif args.prometheus:
        sys.stdout.write(render.status_prometheus(rows))
    else:
        _out(render.status_text(rows))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    from mplexctl.engine.apply import detach

    done = detach(args.interfaces or None)
    if args.json:
        _out(render.to_json({"changed": bool(done), "detached": done}))
    else:
        _out("\n".join(f"{n}: detached" for n in done) if done else "nothing to detach")
    return 0


# --- parser -----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mplexctl",
        description="Validate and re-route packets at line rate with XDP, from one YAML file.",
        epilog="exit codes: 0 ok, 1 diff found a difference, 2 invalid config or usage, "
        "3 host problem, 4 refused (foreign program), 5 kernel refused, 6 lock busy, "
        "70 internal error, 141 stdout closed by its reader",
    )
    ap.add_argument("--version", action="version", version=f"mplexctl {__version__}")
    sub = ap.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, fn: Handler, help_: str, *, json: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        p.add_argument(
            "--netns", metavar="NAME", help="operate inside this named network namespace (as ip -n)"
        )
        if json:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = verb("validate", cmd_validate, "check config files (exit 0 valid, 2 invalid)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p = verb("compile", cmd_compile, "print the generated header and map contents")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="write mplex_config.h, mplex.c, maps.json")
    p.add_argument("--emit", action="store_true", help="print the final C source")
    verb("schema", cmd_schema, "print the JSON Schema of the config language", json=False)
    p = verb("apply", cmd_apply, "make the host match FILE (idempotent, hitless)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--check", action="store_true", help="print the plan, change nothing")
    p.add_argument(
        "--force", action="store_true", help="replace XDP programs that mplex did not attach"
    )
    p = verb("diff", cmd_diff, "FILE vs live state, or OLD vs NEW (exit 0 same, 1 differ)")
    p.add_argument("file", metavar="FILE|OLD")
    p.add_argument("new", nargs="?", metavar="NEW")
    p = verb("status", cmd_status, "programs, generations and counters per interface")
    p.add_argument("interfaces", nargs="*", metavar="IFACE")
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="text exposition format (node_exporter textfile collector)",
    )
    p = verb("detach", cmd_detach, "remove mplex programs (all, or from IFACE...)")
    p.add_argument("interfaces", nargs="*", metavar="IFACE")
    prove.register(verb)  # test, explain
    return ap


def _report(exc: MplexError, as_json: bool) -> None:
    if isinstance(exc, ConfigError):
        for line in exc.problems:
            _err(line)
        msg = "\n".join(exc.problems)
    else:
        msg = str(exc)
        _err(f"mplexctl: error: {msg}")
    if as_json:
        _out(render.to_json({"failed": True, "msg": msg, "exit_code": exc.exit_code}))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.netns:
            from mplexctl.backend.host import enter_netns

            enter_netns(args.netns)
        code: int = args.fn(args)
        return code
    except MplexError as exc:
        _report(exc, as_json)
        return exc.exit_code
    except KeyboardInterrupt:
        _err("mplexctl: interrupted")
        return 130
    except BrokenPipeError:  # the reader went away (mplexctl status | head -1): say nothing
        return EXIT_PIPE
    except Exception as exc:  # a bug: one line, no traceback (MPLEXCTL_DEBUG=1 shows it)
        if os.environ.get("MPLEXCTL_DEBUG"):
            raise
        _err(
            f"mplexctl: internal error: {type(exc).__name__}: {exc} "
            "(set MPLEXCTL_DEBUG=1 for details)"
        )
        if as_json:
            _out(render.to_json({"failed": True, "msg": str(exc), "exit_code": EXIT_INTERNAL}))
        return EXIT_INTERNAL


def run() -> NoReturn:
    """The console script: main(), then exit without tearing the interpreter down. Freeing a
    65,536-route apply's tables object by object takes ~20 ms, a tenth of the budget. Nothing
    is lost: output is flushed here, files are closed where they are written, the kernel closes
    the fds and releases the lock, and bcc's exit handlers (one per loaded object) only repeat
    the cleanup the loader already did."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (mplexctl status | head -1)
        code = code or EXIT_PIPE
    except OSError as exc:  # e.g. a full disk: the output is incomplete, say so
        os.write(2, f"mplexctl: error: cannot write the output: {exc.strerror or exc}\n".encode())
        code = code or HostError.exit_code
    os._exit(code)
