"""`mplexctl explain`: the path one frame takes through the contract, step by step, as a
router's packet trace. The steps are the model's own (run_model traced), so explain and the
model cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mplexctl.config.model import Config
from mplexctl.contract.expect import PASS
from mplexctl.contract.model import parse, run_model


@dataclass(frozen=True)
class Explanation:
    verdict: str  # "pass" (not a service packet) or one of constants.VERDICTS
    service: str | None
    port: int | None  # the new destination port of a rewrite
    action: str  # "pass" | "drop" (the XDP action)
    steps: tuple[str, ...]
    frame: bytes
    output: bytes

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "service": self.service,
            "port": self.port,
            "action": self.action,
            "steps": list(self.steps),
            "frame": self.frame.hex(),
            "output": self.output.hex(),
        }


def explain(config: Config, frame: bytes) -> Explanation:
    steps: list[str] = []
    result = run_model(config, frame, steps)
    port = None
    if result.verdict == "rewrite":
        parsed = parse(result.frame)
        assert parsed is not None  # a rewritten frame parses as its input did
        port = int.from_bytes(result.frame[parsed.l4 + 2 : parsed.l4 + 4], "big")
    if result.verdict is None:
        steps.append("verdict: pass (not a service packet: untouched, no counter) (XDP_PASS)")
    return Explanation(
        result.verdict or PASS,
        result.service,
        port,
        result.action,
        tuple(steps),
        bytes(frame),
        result.frame,
    )
