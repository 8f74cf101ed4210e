"""The main job, as a short script of stage calls (as nmstate's netapplier):
load -> validate -> compile -> probe -> plan -> execute (with undo) -> verify.

Each shortcut sits in mplexctl/accel/ behind one call that answers None ("not applicable")
when it cannot help; the reference path is the line after it. MPLEXCTL_ACCEL=0 turns every
shortcut off, and the result is the same."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from mplexctl.accel import noop, overlap, reprobe
from mplexctl.backend import host
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import load_config
from mplexctl.engine import confirm, faults, rollback
from mplexctl.engine.execute import execute
from mplexctl.engine.history import Journal, Origin, Pending, Recorder
from mplexctl.engine.plan import Plan, plan
from mplexctl.engine.probe import probe
from mplexctl.engine.state import LiveState, desired_services, readable_state
from mplexctl.errors import HostError, KernelError, RefusedError


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    generation: str
    plan: Plan
    # (before, after) readable, made on demand: big route tables are slow to spell out.
    views: Callable[[], tuple[dict[str, Any], dict[str, Any]]]
    verified: bool
    check: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    compiles: int = 0
    checkpoint: int | None = None  # history's sequence number of this apply
    pending: Pending | None = None  # the confirm window this apply armed

    @property
    def before(self) -> dict[str, Any]:
        return self.views()[0]

    @property
    def after(self) -> dict[str, Any]:
        return self.views()[1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "generation": self.generation,
            "plan": self.plan.as_list(),
            "before": self.before,
            "after": self.after,
            "verified": self.verified,
            "check": self.check,
            "notes": [*self.plan.notes, *self.plan.warnings, *self.notes],
            "compiles": self.compiles,
            "checkpoint": self.checkpoint,
            "pending_until": self.pending.deadline if self.pending else None,
            "reverts_to": self.pending.reverts_to if self.pending else None,
        }


def live_view(live: LiveState, names: set[str]) -> dict[str, Any]:
    """Readable live state of the named interfaces and of every interface mplex runs on."""
    out = {}
    for state in live.interfaces.values():
        if state.name in names or state.ingress is not None:
            prog = state.ingress
            out[state.name] = readable_state(
                prog.services if prog else None,
                state.ingress_mode,
                prog.generation if prog else None,
            )
    return {"interfaces": out}


def desired_view(build: Build) -> dict[str, Any]:
    services = desired_services(build)
    return {
        "interfaces": {
            i.name: readable_state(
                services, "tc" if i.hook == "tc" else i.xdp_mode, build.generation
            )
            for i in build.config.interfaces
        }
    }


def _views(
    before: LiveState, names: set[str], after: LiveState | Build
) -> Callable[[], tuple[dict[str, Any], dict[str, Any]]]:
    @cache
    def views() -> tuple[dict[str, Any], dict[str, Any]]:
        new = desired_view(after) if isinstance(after, Build) else live_view(after, names)
        return live_view(before, names), new

    return views


def check_applicable(p: Plan) -> None:
    if p.missing:
        missing = ", ".join(p.missing)
        raise HostError(f"interface(s) in the file but not {host.where()}: {missing}")
    if p.refused:
        who = "; ".join(
            f"{s.name} carries XDP program {s.prog_name!r} (id {s.prog_id})" for s in p.refused
        )
        raise RefusedError(
            f"{who}: not attached by mplex, left alone",
            hint=("--force", "use --force to replace it"),
        )


def plan_file(path: str, *, force: bool = False) -> Plan:
    """FILE vs the live state (for `diff`): the same planner apply uses."""
    return plan(compile_config(load_config(path)), probe(), force=force)


APPLY = Origin()


def apply(
    path: str,
    *,
    check: bool = False,
    force: bool = False,
    confirm_within: float | None = None,
    origin: Origin = APPLY,
) -> ApplyResult:
    """Make the live state what the file says (check: only say what that would change), and
    record it in history (engine/history.py); with confirm_within, the change reverts unless
    confirmed in time (engine/confirm.py). `origin`: a rollback or revert re-applying a
    checkpoint's bytes."""
    raw = read_source(path)
    source = noop.source_digest(path, raw)  # accel: the file's digest; None when off
    with host.host_lock():
        journal = Journal.here()
        stacked = None  # exit 4 while a change is pending (unless --force: stack onto it)
        if not check and origin.kind == "apply":
            stacked = confirm.refuse_stacking(journal, force)
        rec = Recorder(journal, raw, path, source or "", origin)
        unchanged = noop.unchanged(source)  # accel: the live state if nothing changed
        if unchanged is not None:
            if not check:
                rec.unchanged(next(iter(unchanged.programs().values())).generation)
            return nothing_to_do(unchanged, check, rec.notes)
        loaded = overlap.load_and_probe(path)  # accel: parse while probing
        build, live = loaded if loaded is not None else load_then_probe(path)
        names = {i.name for i in build.config.interfaces}
        p = plan(build, live, force=force)
        check_applicable(p)
        stamp = noop.stamp(source, build)
        if check or p.empty:
            if not check:
                noop.restamp(live, build, stamp)  # accel: e.g. only comments changed
                rec.unchanged(build.generation)  # history: only when it does not end with it
            return ApplyResult(
                changed=not p.empty,
                generation=build.generation,
                plan=p,
                views=_views(live, names, build),
                verified=p.empty,
                check=check,
                notes=tuple(rec.notes),
            )
        window = confirm.prepare(journal, live, confirm_within, stacked)  # before any change
        pending = confirm.arm(journal, window) if window else None  # its watchdog runs now
        if window is None:
            rec.start(build.generation)  # written while the kernel work runs, kept if verified
        try:
            host.ensure_bpffs()
            outcome = execute(p, build, live, stamp)
            faults.drift_point("before-verify")  # test hook
            after, leftover = verify(build, p, live, force=force)
        except BaseException:
            rec.drop()
            if window:
                confirm.disarm(journal, window)
            raise
        if not leftover.empty:
            if window:
                confirm.disarm(journal, window)
            rec.failed(build.generation)
            if origin.kind in ("apply", "boot"):  # put the generation live before back
                raise rollback.after_failed_verify(journal, live, leftover)
            lines = "; ".join(c.detail for c in leftover.changes) or "state still differs"
            raise KernelError(f"verification failed after apply: {lines}")
        if window and pending:
            pending = confirm.started(journal, window, pending)  # counts from now
        ck = rec.verified(build.generation, pending)
    return ApplyResult(
        changed=True,
        generation=build.generation,
        plan=p,
        views=_views(live, names, after),
        verified=True,
        check=False,
        notes=(*outcome.notes, *rec.notes),
        compiles=outcome.compiles,
        checkpoint=ck.seq if ck else None,
        pending=pending,
    )


def read_source(path: str) -> bytes:
    """The config file's bytes (history records them exactly)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        load_config(path)  # raises the ConfigError that names the file and the reason
        raise


def load_then_probe(path: str) -> tuple[Build, LiveState]:
    """Load, validate and compile the file (nothing touched yet), then read the live state."""
    build = compile_config(load_config(path))
    return build, probe()


def nothing_to_do(live: LiveState, check: bool, notes: list[str]) -> ApplyResult:
    """The result of an apply that found the live state already as the file says."""
    gen = next(iter(live.programs().values())).generation
    return ApplyResult(
        changed=False,
        generation=gen,
        plan=Plan(gen),
        views=_views(live, set(), live),
        verified=True,
        check=check,
        notes=tuple(notes),
    )


def verify(build: Build, p: Plan, before: LiveState, *, force: bool) -> tuple[LiveState, Plan]:
    """Probe again and plan again: after an apply, nothing may be left to do (the second
    plan is empty; apply rolls back when it is not)."""
    after = probe(expect=reprobe.expected(p, before, build))  # accel: confirm in bulk
    return after, plan(build, after, force=force)


def detach(names: list[str] | None, *, taking_back: bool = False) -> list[str]:
    """Remove mplex programs (all, or from the named interfaces); never anyone else's. Refused
    while a change is pending confirmation (its window would re-attach at the deadline) unless
    it is a revert or rollback (`taking_back`)."""
    from mplexctl.engine.execute import detach_interface

    with host.host_lock():
        if not taking_back:
            confirm.refuse_stacking(Journal.here(), force=False, verb="detach")
        live = probe()
        targets = names if names else [s.name for s in live.mplex_interfaces()]
        done = []
        for name in targets:
            state = live.interfaces.get(name)
            if state is None:
                raise HostError(f"interface {name} does not exist")
            if state.generations():  # a foreign XDP program next to mplex's TC one stays
                detach_interface(state)
                done.append(name)
            elif state.foreign:
                raise RefusedError(
                    f"{name} carries XDP program {state.prog_name!r} "
                    f"(id {state.prog_id}), not mplex's: left alone"
                )
        return done
