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
from mplexctl.engine.execute import execute
from mplexctl.engine.plan import Plan, plan
from mplexctl.engine.probe import probe
from mplexctl.engine.state import LiveState, desired_services, readable_state
from mplexctl.errors import HostError, KernelError, RefusedError


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    generation: str
    plan: Plan
    # (before, after) readable, made on demand: 2 x 65,536 routes are slow to spell out.
    views: Callable[[], tuple[dict[str, Any], dict[str, Any]]]
    verified: bool
    check: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    compiles: int = 0

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


def apply(path: str, *, check: bool = False, force: bool = False) -> ApplyResult:
    """Make the live state what the file says (check: only say what that would change)."""
    source = noop.source_digest(path)  # accel: the file's digest; None when off
    with host.host_lock():
        unchanged = noop.unchanged(source)  # accel: the live state if nothing changed
        if unchanged is not None:
            return nothing_to_do(unchanged, check)
        loaded = overlap.load_and_probe(path)  # accel: parse while probing
        build, live = loaded if loaded is not None else load_then_probe(path)
        names = {i.name for i in build.config.interfaces}
        p = plan(build, live, force=force)
        check_applicable(p)
        stamp = noop.stamp(source, build)
        if check or p.empty:
            if not check:
                noop.restamp(live, build, stamp)  # accel: e.g. only comments changed
            return ApplyResult(
                changed=not p.empty,
                generation=build.generation,
                plan=p,
                views=_views(live, names, build),
                verified=p.empty,
                check=check,
            )
        host.ensure_bpffs()
        outcome = execute(p, build, live, stamp)
        after = verify(build, p, live, force=force)
    return ApplyResult(
        changed=True,
        generation=build.generation,
        plan=p,
        views=_views(live, names, after),
        verified=True,
        check=False,
        notes=tuple(outcome.notes),
        compiles=outcome.compiles,
    )


def load_then_probe(path: str) -> tuple[Build, LiveState]:
    """Load, validate and compile the file (nothing touched yet), then read the live state."""
    build = compile_config(load_config(path))
    return build, probe()


def nothing_to_do(live: LiveState, check: bool) -> ApplyResult:
    """The result of an apply that found the live state already as the file says."""
    gen = next(iter(live.programs().values())).generation
    return ApplyResult(
        changed=False,
        generation=gen,
        plan=Plan(gen),
        views=_views(live, set(), live),
        verified=True,
        check=check,
    )


def verify(build: Build, p: Plan, before: LiveState, *, force: bool) -> LiveState:
    """Probe again and plan again: after an apply, nothing may be left to do."""
    after = probe(expect=reprobe.expected(p, before, build))  # accel: confirm in bulk
    leftover = plan(build, after, force=force)
    if not leftover.empty:
        lines = "; ".join(c.detail for c in leftover.changes) or "state still differs"
        raise KernelError(f"verification failed after apply: {lines}")
    return after


def detach(names: list[str] | None) -> list[str]:
    """Remove mplex programs (all, or from the named interfaces); never anyone else's."""
    from mplexctl.engine.execute import detach_interface

    with host.host_lock():
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
