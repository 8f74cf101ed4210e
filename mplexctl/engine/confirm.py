"""Confirm or revert: a change applied with --confirm-within reverts itself unless confirmed.

The window is a file (history's pending.json) plus a watchdog: a detached process (double
fork, its own session, no terminal, stdio on /dev/null) that is no child of the caller, so
the end of the caller, of its terminal or of Ansible's connection does not end it. At the
deadline it takes the apply lock and reverts through the ordinary pipeline. A watchdog that
was killed, or a reboot, leaves the file behind: every mplexctl verb (and the boot unit) looks
at it first and reverts an expired or void window (settle). What the watchdog and settle do
is logged to /var/log/mplexctl/mplexctl.log (or $MPLEXCTL_LOG_DIR)."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mplexctl.backend import host
from mplexctl.engine.history import (
    CONFIRMED,
    REVERTED,
    Checkpoint,
    Journal,
    Origin,
    Pending,
)
from mplexctl.errors import HostError, MplexError, RefusedError, UsageError

if TYPE_CHECKING:
    from mplexctl.engine.apply import ApplyResult
    from mplexctl.engine.state import LiveState

WINDOW_MIN = 5.0
WINDOW_MAX = 3600.0
LOG_ENV = "MPLEXCTL_LOG_DIR"
LOG_DIR = "/var/log/mplexctl"
LOG_FILE = "mplexctl.log"
POLL = 1.0  # how often a watchdog looks whether its window was confirmed
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """`30s`, `2m`, `1h`, `1m30s` or plain seconds; 5 s .. 1 h."""
    t = text.strip().lower()
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", t) if t else None
    if not parts or not any(parts.groups()):
        raise UsageError(f"--confirm-within {text!r}: not a duration (e.g. 30s, 2m, 1h)")
    h, m, s = (int(g) if g else 0 for g in parts.groups())
    seconds = float(h * 3600 + m * 60 + s)
    if not WINDOW_MIN <= seconds <= WINDOW_MAX:
        raise UsageError(f"--confirm-within {text}: must be between 5s and 1h")
    return seconds


def hms(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ts))


def log(journal: Journal, text: str) -> None:
    """One line in the log file (best effort: a full or read-only /var/log loses the line)."""
    directory = os.environ.get(LOG_ENV) or LOG_DIR
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    where = os.path.relpath(journal.dir, os.path.dirname(os.path.dirname(journal.dir)))
    line = f"{stamp} mplexctl[{os.getpid()}] {where}: {text}\n"
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(directory, LOG_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


# --- arming a window (apply) ---------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What an apply with --confirm-within (or a --force apply over a pending one) arms."""

    target: Checkpoint | None  # revert to it; None: detach (nothing was attached before)
    reverts_to: str | None
    seconds: float | None  # None: keep the stacked window's deadline
    stacked: Pending | None


def refuse_stacking(journal: Journal, force: bool, verb: str = "apply") -> Pending | None:
    """A change is pending: refuse (exit 4) unless --force, which stacks onto it."""
    p = journal.pending()
    if p is None:
        return None
    if not force:
        how = (
            ", or apply with --force to stack this change onto it (both revert together)"
            if verb == "apply"
            else " (rollback takes it back now)"
        )
        raise RefusedError(
            f"{verb} refused: a change is pending confirmation until {hms(p.deadline)} UTC "
            f"(checkpoint {', '.join(map(str, p.seqs))}): run `mplexctl confirm` or "
            f"`mplexctl rollback` first{how}"
        )
    return p


def prepare(
    journal: Journal, live: LiveState, seconds: float | None, stacked: Pending | None
) -> Window | None:
    """The revert target of a new window, decided before anything changes."""
    if stacked is None and seconds is None:
        return None
    try:  # the window's files must be writable before anything changes
        os.makedirs(journal.dir, mode=0o700, exist_ok=True)
        probe = os.path.join(journal.dir, f".probe-{os.getpid()}")
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise HostError(
            f"cannot arm a confirm window: history directory {journal.dir}: {exc.strerror}"
        ) from None
    if stacked is not None:
        target = journal.get(stacked.target) if stacked.target is not None else None
        return Window(target, stacked.reverts_to, seconds, stacked)
    gens = {s.program.generation for s in live.mplex_interfaces() if s.program is not None}
    if not gens:
        return Window(None, None, seconds, None)
    target = journal.live_checkpoint(gens)
    if target is None:
        raise UsageError(
            f"cannot arm a confirm window: the live generation ({', '.join(sorted(gens))}) is "
            "not in mplexctl's history, so there is nothing to revert to; apply it once "
            "without --confirm-within to record it"
        )
    return Window(target, target.generation, seconds, None)


def arm(journal: Journal, window: Window) -> Pending:
    """Before anything changes: write the pending change (for the checkpoint the apply will
    record) and start its watchdog, so that an apply killed half-way is reverted too. A
    stacked window keeps its deadline and watchdog unless a new duration is given. The
    deadline counts again from the end of the apply (started())."""
    import secrets

    seq = journal.next_seq()
    old = window.stacked
    if window.seconds is None and old is not None:
        p = replace(old, seqs=(*old.seqs, seq))
        journal.write_pending(p)
        return p
    assert window.seconds is not None
    p = Pending(
        token=secrets.token_hex(8),
        seqs=((*old.seqs, seq) if old else (seq,)),
        target=window.target.seq if window.target else None,
        reverts_to=window.reverts_to,
        deadline=time.time() + window.seconds,
        boot_id=host.boot_id(),
    )
    journal.write_pending(p)
    p = replace(p, watchdog_pid=spawn_watchdog(journal, p.token))
    journal.write_pending(p)
    return p


def started(journal: Journal, window: Window, p: Pending) -> Pending:
    """The apply is verified: the window's duration counts from now."""
    if window.seconds is None:
        return p
    p = replace(p, deadline=time.time() + window.seconds)
    journal.write_pending(p)
    return p


def disarm(journal: Journal, window: Window) -> None:
    """The apply failed before it was verified: the window it armed goes (a stacked one
    stays as it was); its watchdog sees that and leaves."""
    if window.stacked is not None:
        journal.write_pending(window.stacked)
    else:
        journal.clear_pending()


def spawn_watchdog(journal: Journal, token: str) -> int:
    """Start `python -m mplexctl.engine.confirm DIR TOKEN` in a new session; it forks again
    and reports the watchdog's pid: the watchdog is no child (nor grandchild) of ours."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("MPLEXCTL_FAULT")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mplexctl.engine.confirm", journal.dir, token],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        cwd="/",
        env=env,
    )
    out, _ = proc.communicate(timeout=30)
    try:
        return int(out.split()[0])
    except (IndexError, ValueError):
        log(journal, f"watchdog for window {token} did not start (launcher exit {proc.returncode})")
        return 0


# --- confirm, settle, revert ---------------------------------------------------------------
@dataclass(frozen=True)
class Confirmed:
    seqs: tuple[int, ...]
    generation: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return {
            "changed": bool(self.seqs),
            "confirmed": list(self.seqs),
            "generation": self.generation,
            "message": self.message,
        }


def confirm() -> Confirmed:
    with host.host_lock():
        journal = Journal.here()
        notes = settle(journal)
        p = journal.pending()
        if p is None:
            why = f" ({notes[0]})" if notes else ""
            return Confirmed((), None, f"nothing to confirm: no change is pending{why}")
        journal.set_state(p.seqs, CONFIRMED)
        journal.clear_pending()
        last = journal.get(p.seqs[-1])
        gen = last.generation if last else None
        log(journal, f"confirmed generation {gen} (checkpoint {', '.join(map(str, p.seqs))})")
        return Confirmed(p.seqs, gen, f"confirmed generation {gen}")


def expired(p: Pending, now: float | None = None) -> str | None:
    """Why a pending window is over (None: it is still open)."""
    if p.boot_id and p.boot_id != host.boot_id():
        return "the machine rebooted inside the confirm window"
    if (time.time() if now is None else now) >= p.deadline:
        return f"the confirm window ended at {hms(p.deadline)} UTC unconfirmed"
    return None


def settle(journal: Journal | None = None) -> list[str]:
    """Revert a pending change whose window is over (its watchdog was killed, or the machine
    rebooted). Cheap when nothing is pending: one failed open()."""
    journal = journal or Journal.here()
    p = journal.pending()
    if p is None or expired(p) is None:
        return []
    with host.host_lock():
        p = journal.pending()
        why = expired(p) if p is not None else None
        if p is None or why is None:
            return []
        return [revert(journal, p, why).message]


@dataclass(frozen=True)
class Reverted:
    result: ApplyResult | None  # the apply that put the target back
    target: Checkpoint | None  # None: nothing was attached before the window: detached
    detached: tuple[str, ...]
    message: str


def revert(journal: Journal, p: Pending, why: str, state: str = REVERTED) -> Reverted:
    """Put the generation before the window back (through apply), or detach when nothing was
    attached before; the window's checkpoints become `state`. Caller holds the lock."""
    from mplexctl.engine.apply import apply, detach

    seqs = ", ".join(map(str, p.seqs))
    kind = "revert" if state == REVERTED else "rollback"
    # a window's checkpoint is recorded after its apply: one killed before that has none, and
    # its number goes to the next checkpoint (this revert's own)
    recorded = [s for s in p.seqs if s < journal.next_seq()]
    result, target, done = None, None, tuple[str, ...]()
    try:
        if p.target is None:
            done = tuple(detach(None, taking_back=True))
            what = "detached " + (", ".join(done) if done else "nothing") + " (nothing before)"
        else:
            target = journal.get(p.target)
            if target is None:
                raise UsageError(f"checkpoint {p.target} to revert to is missing from history")
            with journal.materialized(target) as path:
                result = apply(path, origin=Origin(kind, target.source, target.seq))
            what = f"reverted to generation {target.generation} (checkpoint {target.seq})"
    except MplexError as exc:
        log(journal, f"could not revert checkpoint {seqs}: {exc}")
        raise
    journal = Journal(journal.dir)  # re-read: the apply recorded a checkpoint
    journal.set_state(recorded, state)
    journal.clear_pending()
    log(journal, f"{why}: checkpoint {seqs} {what}")
    return Reverted(result, target, done, f"{why}: {what}")


# --- the watchdog process ------------------------------------------------------------------
def watch(directory: str, token: str) -> None:
    """Sleep until the window's deadline (leave early when it is confirmed or replaced), then
    revert under the apply lock."""
    journal = Journal(directory)
    log(journal, f"watchdog {os.getpid()} armed for window {token}")
    while True:
        p = journal.pending()
        if p is None or p.token != token:
            log(journal, f"watchdog {os.getpid()}: window {token} confirmed or replaced: exit")
            return
        left = p.deadline - time.time()
        if left <= 0:
            break
        time.sleep(min(left, POLL))
    try:
        with host.host_lock():
            p = journal.pending()
            if p is not None and p.token == token:
                revert(journal, p, expired(p) or "the confirm window ended unconfirmed")
    except MplexError:
        pass  # logged by revert; the next mplexctl verb tries again
    except Exception as exc:  # a bug: logged, never a traceback on a terminal nobody reads
        log(journal, f"watchdog {os.getpid()}: internal error: {type(exc).__name__}: {exc}")


def _launch(directory: str, token: str) -> None:
    """Runs in the launcher (already a new session leader): fork once more, print the
    watchdog's pid, exit. The watchdog is no session leader, so it can never get a terminal."""
    import signal

    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.umask(0o022)
    try:
        watch(directory, token)
    finally:
        os._exit(0)


if __name__ == "__main__":
    _launch(sys.argv[1], sys.argv[2])
