"""Verbs that take a change back: history, rollback, confirm; apply's --confirm-within and
--boot; and the settle every verb does first (an expired confirm window is reverted)."""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any

from mplexctl.cli import render
from mplexctl.cli.verb import Args, Report, Verb
from mplexctl.errors import MplexError

if TYPE_CHECKING:
    from mplexctl.engine.apply import ApplyResult
    from mplexctl.engine.history import Checkpoint, Journal, Pending


def settle_first() -> list[str]:
    """Before any verb: revert a pending change whose confirm window is over (its watchdog was
    killed, or the machine rebooted). Only root can; others are not held up. Returns the
    lines to print on stderr."""
    if os.geteuid() != 0:
        return []
    from mplexctl.engine.confirm import settle

    try:
        return [f"mplexctl: {note}" for note in settle()]
    except MplexError as exc:
        return [f"mplexctl: warning: an expired unconfirmed change could not be reverted: {exc}"]
    except OSError as exc:
        return [f"mplexctl: warning: cannot read the pending change: {exc}"]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _state_text(ck: Checkpoint) -> str:
    from mplexctl.engine.confirm import hms
    from mplexctl.engine.history import PENDING_STATE

    if ck.state == PENDING_STATE and ck.deadline:
        return f"pending until {hms(ck.deadline)}"
    return ck.state


def _note(ck: Checkpoint) -> str:
    bits = []
    if ck.kind in ("rollback", "revert", "boot") and ck.of_seq is not None:
        bits.append(f"{ck.kind} to {ck.of_seq}")
    elif ck.kind == "boot":
        bits.append("boot")
    if ck.result and ck.result != "verified":
        bits.append(ck.result)
    return f"  ({', '.join(bits)})" if bits else ""


def _checkpoint_dict(ck: Checkpoint, live: bool) -> dict[str, Any]:
    from mplexctl.engine.history import PENDING_STATE

    pending = ck.state == PENDING_STATE and ck.deadline is not None
    return {
        "seq": ck.seq,
        "generation": ck.generation,
        "applied_at": _iso(ck.applied_at),
        "source": ck.source,
        "state": ck.state,
        "state_text": _state_text(ck),
        "pending_until": _iso(ck.deadline) if pending and ck.deadline else None,
        "live": live,
        "kind": ck.kind,
        "result": ck.result,
        "of_seq": ck.of_seq,
        "sha256": ck.sha256,
        "size": ck.size,
    }


def _pending_dict(p: Pending | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "checkpoints": list(p.seqs),
        "until": _iso(p.deadline),
        "reverts_to": p.reverts_to,
        "watchdog_pid": p.watchdog_pid,
    }


def _live_generations(journal: Journal) -> set[str] | None:
    from mplexctl.engine.probe import probe
    from mplexctl.engine.rollback import live_generations

    try:
        return live_generations(probe())
    except (MplexError, OSError) as exc:
        journal.problems.append(f"cannot read the live generation: {exc}")
        return None


def cmd_history(args: Args) -> Report:
    from mplexctl.engine.history import Journal

    journal = Journal.here()
    cks = journal.checkpoints()
    gens = _live_generations(journal)
    live = journal.live_checkpoint(gens) if gens else None
    pending = journal.pending()
    warnings = tuple(journal.problems)
    if args.json:
        doc = {
            "directory": journal.dir,
            "checkpoints": [_checkpoint_dict(c, c is live) for c in cks],
            "pending": _pending_dict(pending),
            "unreadable": list(journal.problems),
        }
        return Report(data=doc, warnings=warnings)
    if not cks:
        return Report(text=f"no checkpoints in history ({journal.dir})", warnings=warnings)
    width = max(len(c.source) for c in cks)
    rows = [
        f"  {'SEQ':>4}  {'GENERATION':<12}  {'APPLIED AT (UTC)':<19}  {'SOURCE':<{width}}  STATE"
    ]
    for c in cks:
        mark = "*" if c is live else " "
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c.applied_at))
        rows.append(
            f"{mark} {c.seq:>4}  {c.generation:<12}  {when}  {c.source:<{width}}  "
            f"{_state_text(c)}{_note(c)}"
        )
    rows.append("* live generation" if live else "(no checkpoint is live)")
    return Report(text="\n".join(rows), warnings=warnings)


def _rollback_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", metavar="GENERATION", help="the checkpoint of this generation")
    p.add_argument("--check", action="store_true", help="print the plan, change nothing")


def cmd_rollback(args: Args) -> Report:
    from mplexctl.engine.rollback import rollback

    done = rollback(args.to, check=args.check)
    result, target = done.result, done.target
    if args.json:
        doc: dict[str, Any] = result.as_dict() if result else {"changed": bool(done.detached)}
        doc["rolled_back_to"] = (
            {"seq": target.seq, "generation": target.generation} if target else None
        )
        doc["detached"] = list(done.detached)
        return Report(data=doc)
    if result is None or target is None:
        what = ", ".join(done.detached) or "nothing"
        return Report(
            text=f"rolled back the pending change: detached {what} (nothing was attached before)"
        )
    lines = [render.plan_text(result.plan), *result.notes]
    what = f"generation {target.generation} (checkpoint {target.seq}, {target.source})"
    if result.check:
        lines.append(f"check mode: nothing changed (rollback would apply {what})")
    elif result.changed:
        lines.append(f"rolled back to {what}; verified (re-probe: no changes)")
    else:
        lines.append(f"{what} is already live")
    return Report(text="\n".join(lines))


def cmd_confirm(args: Args) -> Report:
    from mplexctl.engine.confirm import confirm

    done = confirm()
    return Report(data=done.as_dict()) if args.json else Report(text=done.message)


def apply_flags(p: argparse.ArgumentParser) -> None:
    """The flags `apply` gains: a confirm window, and the boot unit's mode."""
    p.add_argument(
        "--confirm-within",
        metavar="DURATION",
        help="revert unless `mplexctl confirm` runs within DURATION (30s, 2m; 5s..1h)",
    )
    p.add_argument(
        "--boot",
        action="store_true",
        help="boot unit mode: a FILE whose change was taken back is not applied again; "
        "the last confirmed checkpoint is",
    )


def apply_with(args: Args) -> tuple[ApplyResult | None, str]:
    """apply, with --confirm-within and --boot: (the result, a line for stderr). None: --boot
    applied nothing (FILE was taken back and nothing was confirmed before)."""
    from mplexctl.engine.apply import apply
    from mplexctl.engine.confirm import parse_duration
    from mplexctl.engine.rollback import boot_apply
    from mplexctl.errors import UsageError

    within = parse_duration(args.confirm_within) if args.confirm_within else None
    if not args.boot:
        return apply(args.file, check=args.check, force=args.force, confirm_within=within), ""
    if within is not None or args.check:
        raise UsageError("--boot goes with neither --confirm-within nor --check")
    return boot_apply(args.file, force=args.force)


def pending_line(result: Any) -> str:
    from mplexctl.engine.confirm import hms

    p = result.pending
    back = p.reverts_to if p.reverts_to else "nothing (detach)"
    return (
        f"applied generation {result.generation}; reverts to {back} at {hms(p.deadline)} UTC "
        "unless confirmed (mplexctl confirm)"
    )


VERBS = (
    Verb("history", "checkpoints of this namespace, newest first", cmd_history, netns=True),
    Verb(
        "rollback",
        "re-apply an earlier checkpoint (default: the one before the live one)",
        cmd_rollback,
        _rollback_args,
        netns=True,
    ),
    Verb("confirm", "keep the change pending confirmation", cmd_confirm, netns=True),
)
