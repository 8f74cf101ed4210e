"""Verbs that read config files and touch no kernel state: validate, compile, schema."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mplexctl.cli import render
from mplexctl.cli.verb import Args, Report, Verb
from mplexctl.errors import EXIT_USAGE, ConfigError, HostError, Problem, UsageError


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="a config file; - reads stdin")
    p.add_argument(
        "--name",
        metavar="NAME",
        help="call the file NAME in messages (one FILE only; e.g. the template it was "
        "rendered from)",
    )


def cmd_validate(args: Args) -> Report:
    from mplexctl.config import load_config

    if args.name and len(args.files) != 1:
        raise UsageError("--name names one FILE, not several")
    files: list[dict[str, Any]] = []
    problems: list[Problem] = []
    warnings: list[Problem] = []
    lines: list[str] = []
    for path in args.files:
        found: tuple[Problem, ...] = ()
        warned: tuple[Problem, ...] = ()
        try:
            config = load_config(path, name=args.name or "")
            warned = config.warnings
            lines.append(f"{config.source}: valid")
        except ConfigError as exc:
            found = exc.items
        files.append(
            {
                "file": args.name or ("<stdin>" if path == "-" else path),
                "valid": not found,
                "problems": [p.as_dict() for p in found],
                "warnings": [w.as_dict() for w in warned],
            }
        )
        problems += found
        warnings += warned
    bad = sum(1 for f in files if not f["valid"])
    return Report(
        data={"files": files},
        text="\n".join(lines),
        exit_code=EXIT_USAGE if problems else 0,
        failed=bool(problems),
        msg=f"{bad} of {len(files)} file(s) invalid: {len(problems)} problem(s)",
        problems=tuple(problems),
        warnings=tuple(w.text for w in warnings),
    )


def _compile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="write mplex_config.h, mplex.c, maps.json")
    p.add_argument("--emit", action="store_true", help="print the final C source")


def _write_out(out: Path, files: dict[str, str]) -> list[str]:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HostError(f"cannot create the output directory {out}: {exc.strerror}") from None
    written = []
    for name, text in files.items():
        path = out / name
        try:
            path.write_text(text)
        except OSError as exc:
            raise HostError(f"cannot write {path}: {exc.strerror}") from None
        written.append(str(path))
    return written


def cmd_compile(args: Args) -> Report:
    from mplexctl.compiler.build import compile_config
    from mplexctl.config import load_config

    build = compile_config(load_config(args.file))
    written: list[str] = []
    if args.out:
        maps_json = render.to_json(build.maps_readable()) + "\n"
        files = {"mplex_config.h": build.header, "mplex.c": build.source, "maps.json": maps_json}
        written = _write_out(Path(args.out), files)
    if args.json:
        data = {
            "generation": build.generation,
            "digest": build.digest,
            "program_digest": build.program_digest,
            "defines": dict(build.defines),
            "header": build.header,
            "maps": build.maps_readable(),
            "files": written,
        }
        return Report(data=data)
    if args.emit:
        return Report(text=build.source)
    if written:
        return Report(text=f"wrote {', '.join(written)} (generation {build.generation})")
    return Report(text=render.maps_text(build))


def cmd_schema(args: Args) -> Report:
    from mplexctl.config.schema import schema_text

    return Report(text=schema_text())


VERBS = (
    Verb(
        "validate",
        "check config files (exit 0 valid, 2 invalid)",
        cmd_validate,
        _validate_args,
    ),
    Verb(
        "compile",
        "print the generated header and map contents",
        cmd_compile,
        _compile_args,
        json_excludes=("emit",),
    ),
    Verb("schema", "print the JSON Schema of the config language", cmd_schema, json=False),
)
