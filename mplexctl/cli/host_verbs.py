"""Verbs that read or change the kernel's state in a network namespace: apply, diff, status,
detach."""

from __future__ import annotations

import argparse

from mplexctl.cli import render, takeback
from mplexctl.cli.verb import Args, Report, Verb
from mplexctl.errors import EXIT_DIFF, EXIT_OK, EXIT_USAGE


def _apply_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--check", action="store_true", help="print the plan, change nothing")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace XDP programs that mplex did not attach; apply over a pending change",
    )
    takeback.apply_flags(p)


def cmd_apply(args: Args) -> Report:
    result, said = takeback.apply_with(args)  # --confirm-within, --boot
    if result is None:  # --boot: FILE was taken back, and nothing was confirmed before it
        data: dict[str, object] = {
            "changed": False, "check": False, "generation": None, "plan": [],
            "before": {"interfaces": {}}, "after": {"interfaces": {}}, "verified": True,
            "notes": [said], "compiles": 0, "checkpoint": None, "pending_until": None,
            "reverts_to": None,
        }  # fmt: skip
        return Report(data=data) if args.json else Report(text=said)
    warnings = (*result.plan.warnings, *([said] if said else []))
    if args.json:
        return Report(data=result.as_dict(), warnings=warnings)
    lines = [render.plan_text(result.plan), *result.notes]
    if result.check and not result.plan.empty:
        lines.append("check mode: nothing changed")
    elif result.pending is not None:
        lines.append(takeback.pending_line(result))
    elif result.changed and not result.check:
        lines.append(f"applied generation {result.generation}; verified (re-probe: no changes)")
    return Report(text="\n".join(lines), warnings=warnings)


def _diff_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE|OLD")
    p.add_argument("new", nargs="?", metavar="NEW")


def cmd_diff(args: Args) -> Report:
    from mplexctl.compiler.build import compile_config
    from mplexctl.config import load_config
    from mplexctl.engine.apply import check_applicable, plan_file
    from mplexctl.engine.plan import plan, virtual_host

    if args.new:
        old = compile_config(load_config(args.file))
        new = compile_config(load_config(args.new))
        p = plan(new, virtual_host(old, new))
    else:
        p = plan_file(args.file)
        check_applicable(p)
    code = EXIT_OK if p.empty else EXIT_DIFF
    if args.json:
        data = {
            "changed": not p.empty,
            "generation": p.generation,
            "plan": p.as_list(),
            "notes": [*p.notes, *p.warnings],
        }
        return Report(data=data, exit_code=code, warnings=p.warnings)
    return Report(text=render.plan_text(p), exit_code=code, warnings=p.warnings)


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("interfaces", nargs="*", metavar="IFACE")
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="text exposition format (node_exporter textfile collector)",
    )


def cmd_status(args: Args) -> Report:
    from mplexctl.engine.status import status

    rows = status(args.interfaces or None)
    if args.json:
        return Report(data={"interfaces": [r.as_dict() for r in rows]})
    if args.prometheus:
        return Report(text=render.status_prometheus(rows))
    return Report(text=render.status_text(rows))


def _detach_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("interfaces", nargs="*", metavar="IFACE")


def cmd_detach(args: Args) -> Report:
    from mplexctl.engine.apply import detach

    done = detach(args.interfaces or None)
    if args.json:
        return Report(data={"changed": bool(done), "detached": done})
    return Report(text="\n".join(f"{n}: detached" for n in done) if done else "nothing to detach")


VERBS = (
    Verb(
        "apply",
        "make the host match FILE (idempotent, hitless)",
        cmd_apply,
        _apply_args,
        netns=True,
    ),
    Verb(
        "diff",
        "FILE vs live state, or OLD vs NEW (exit 0 same, 1 differ, 2 any error)",
        cmd_diff,
        _diff_args,
        netns=True,
        any_error=EXIT_USAGE,
    ),
    Verb(
        "status",
        "programs, generations and counters per interface",
        cmd_status,
        _status_args,
        netns=True,
        json_excludes=("prometheus",),
    ),
    Verb(
        "detach",
        "remove mplex programs (all, or from IFACE...)",
        cmd_detach,
        _detach_args,
        netns=True,
    ),
)
