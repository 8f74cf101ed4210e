"""Taking a change back: `rollback`, the rollback after a failed verification, and the boot
unit's choice. Each re-applies a checkpoint's recorded bytes through the ordinary apply
pipeline (same plan, lock, verification and exit codes); none writes a map itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mplexctl.backend import host
from mplexctl.engine.confirm import revert
from mplexctl.engine.history import (
    CONFIRMED,
    REVERTED,
    ROLLED_BACK,
    Checkpoint,
    Journal,
    Origin,
)
from mplexctl.errors import KernelError, UsageError

if TYPE_CHECKING:
    from mplexctl.engine.apply import ApplyResult
    from mplexctl.engine.plan import Plan
    from mplexctl.engine.state import LiveState


def live_generations(live: LiveState) -> set[str]:
    return {s.program.generation for s in live.mplex_interfaces() if s.program is not None}


def choose(journal: Journal, gens: set[str], to: str | None) -> Checkpoint:
    """--to GENERATION: the newest checkpoint of it (a unique prefix will do). Default: the
    newest checkpoint applied before the live one that was not reverted (a change that was
    never confirmed) and that differs from the live generation."""
    cks = journal.checkpoints()
    if to:
        found = [c for c in cks if c.generation == to] or [
            c for c in cks if c.generation.startswith(to)
        ]
        if len({c.generation for c in found}) > 1:
            raise UsageError(
                f"--to {to}: matches generations {sorted({c.generation for c in found})}"
            )
        if not found:
            raise UsageError(f"--to {to}: no checkpoint of that generation (see mplexctl history)")
        return found[0]
    current = journal.live_checkpoint(gens)
    older = cks[cks.index(current) + 1 :] if current is not None else cks
    for ck in older:
        if ck.state != REVERTED and ck.generation not in gens:
            return ck
    live = f"live generation {', '.join(sorted(gens))}" if gens else "nothing is live"
    raise UsageError(f"nothing to roll back to: no earlier checkpoint in history ({live})")


@dataclass(frozen=True)
class RolledBack:
    """What `rollback` did: re-applied `target` (result), or, taking back a pending window
    whose change had nothing before it, detached."""

    result: ApplyResult | None
    target: Checkpoint | None
    detached: tuple[str, ...] = ()

    @property
    def generation(self) -> str | None:
        return self.target.generation if self.target else None


def rollback(to: str | None = None, *, check: bool = False) -> RolledBack:
    """Re-apply a checkpoint; the checkpoints it takes back (the live one, and a pending
    window's) become `rolled back`, and the pending window ends. While a window is pending,
    the default target is the window's: what was live before it (or nothing: detach)."""
    from mplexctl.engine.apply import apply
    from mplexctl.engine.probe import probe

    with host.host_lock():
        journal = Journal.here()
        pending = journal.pending()
        if pending is not None and to is None and not check:
            done = revert(journal, pending, "rolled back by the operator", ROLLED_BACK)
            return RolledBack(done.result, done.target, done.detached)
        gens = live_generations(probe())
        if pending is not None and to is None and pending.target is not None:
            target = journal.get(pending.target) or choose(journal, gens, to)
        else:
            target = choose(journal, gens, to)
        current = journal.live_checkpoint(gens)
        with journal.materialized(target) as path:
            origin = Origin("rollback", target.source, target.seq)
            result = apply(path, check=check, origin=origin)
        if check or not result.changed:
            return RolledBack(result, target)
        journal = Journal(journal.dir)  # re-read: the apply recorded a checkpoint
        taken = {current.seq} if current is not None else set()
        if pending is not None:
            taken |= set(pending.seqs)
            journal.clear_pending()
        newest = journal.newest()
        taken.discard(newest.seq if newest else -1)
        journal.set_state(sorted(taken), ROLLED_BACK)
        return RolledBack(result, target)


def after_failed_verify(journal: Journal, live: LiveState, leftover: Plan) -> KernelError:
    """The re-probe after an apply did not plan empty (the change is recorded as rolled back):
    put the generation that was live before back (detach when there was none), and return the
    error to raise (exit 5) naming both the difference and the way back."""
    from mplexctl.engine.apply import apply, detach

    found = "; ".join(c.detail for c in leftover.changes) or "state still differs"
    gens = live_generations(live)
    try:
        if not gens:
            detach(None, taking_back=True)
            back = "rolled back: detached (nothing was attached before)"
        else:
            prev = journal.live_checkpoint(gens)
            if prev is None:
                return KernelError(
                    f"verification failed after apply: {found}; not rolled back: the generation "
                    f"live before ({', '.join(sorted(gens))}) is not in history"
                )
            with journal.materialized(prev) as path:
                apply(path, origin=Origin("rollback", prev.source, prev.seq))
            back = f"rolled back to {prev.generation}"
    except Exception as exc:  # the rollback failed too: say both
        return KernelError(f"verification failed after apply: {found}; rollback failed: {exc}")
    return KernelError(f"verification failed after apply: {found}; {back}")


def boot_choice(journal: Journal, raw_sha256: str) -> Checkpoint | bool | None:
    """For the boot unit (`apply FILE --boot`): True to apply FILE; a checkpoint to apply
    instead; None to apply nothing. FILE is set aside when its bytes were taken back
    (reverted or rolled back) and not confirmed again later: the host comes up with the last
    confirmed checkpoint instead."""
    cks = journal.checkpoints()
    mine = [c for c in cks if c.sha256 == raw_sha256]
    if not mine or mine[0].state not in (REVERTED, ROLLED_BACK):
        return True
    confirmed = [c for c in cks if c.state == CONFIRMED]
    return confirmed[0] if confirmed else None


def boot_apply(path: str, *, force: bool = False) -> tuple[ApplyResult | None, str]:
    """The boot unit's apply: FILE, unless it is a change that was taken back (see
    boot_choice); then the last confirmed checkpoint, or nothing."""
    from mplexctl.engine.apply import apply, read_source
    from mplexctl.engine.history import sha256_of

    with host.host_lock():
        journal = Journal.here()
        choice = boot_choice(journal, sha256_of(read_source(path)))
        if choice is True:
            return apply(path, force=force, origin=Origin("boot")), ""
        if choice is None or choice is False:
            return None, f"{path} was taken back and nothing was confirmed before it: not applied"
        with journal.materialized(choice) as tmp:
            result = apply(tmp, force=force, origin=Origin("boot", choice.source, choice.seq))
        return result, (
            f"{path} holds a change that was taken back (not confirmed): applied the last "
            f"confirmed checkpoint {choice.seq} (generation {choice.generation}) instead"
        )
