"""Expectations against the model: what `validate` (and `apply`, for map-only changes) checks.

The kernel side (BPF_PROG_TEST_RUN) is backend/testrun.py; both compare an Outcome with the
one an expectation states, and both word a failure with `failure`.
"""

from __future__ import annotations

from dataclasses import dataclass

from mplexctl.config.model import Config, Expectation
from mplexctl.contract.model import ModelResult, run_model
from mplexctl.contract.packet import Built, build_frame
from mplexctl.errors import Problem

PASS = "pass"  # the expectation word for "not a service packet" (no counter moves)


@dataclass(frozen=True)
class Outcome:
    """What happened to a packet, in expectation words."""

    verdict: str
    port: int | None = None  # the new destination port of a rewrite

    def __str__(self) -> str:
        return f"rewrite to port {self.port}" if self.verdict == "rewrite" else self.verdict

    def as_dict(self) -> dict[str, object]:
        return {"verdict": self.verdict, "port": self.port}


def expected(exp: Expectation) -> Outcome:
    return Outcome(exp.verdict, exp.port if exp.verdict == "rewrite" else None)


def outcome_of(result: ModelResult, built: Built) -> Outcome:
    if result.verdict is None:
        return Outcome(PASS)
    if result.verdict == "rewrite":
        return Outcome("rewrite", int.from_bytes(result.frame[built.l4 + 2 : built.l4 + 4], "big"))
    return Outcome(result.verdict)


def model_outcome(config: Config, exp: Expectation) -> Outcome:
    """The oracle: what the model says happens to the expectation's packet."""
    built = build_frame(config, exp.packet)
    return outcome_of(run_model(config, built.frame), built)


def failure_problem(filename: str, exp: Expectation, got: Outcome, note: str = "") -> Problem:
    """A failed expectation as a config problem (file, line, expect[i] (name), message)."""
    tail = f" {note}" if note else ""
    return Problem(filename, exp.line, exp.label, f"got {got}, expected {expected(exp)}{tail}")


def failure(filename: str, exp: Expectation, got: Outcome, note: str = "") -> str:
    """FILE:LINE: expect[i] (name): got X, expected Y[ note]"""
    return failure_problem(filename, exp, got, note).text


def model_failures(config: Config) -> list[Problem]:
    """One problem per expectation the model does not meet, in file order."""
    out = []
    for exp in config.expectations:
        got = model_outcome(config, exp)
        if got != expected(exp):
            out.append(failure_problem(config.source, exp, got))
    return out
