"""`mplexctl test FILE`: FILE's program loaded and filled but never attached, every expectation
run in the kernel (BPF_PROG_TEST_RUN) and in the model. Nothing on the host changes: the
program and its maps live only as long as this process holds their fds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mplexctl.compiler.build import compile_config
from mplexctl.config import load_config
from mplexctl.config.model import Config, Expectation, Limits, Service, TagSpec, Window
from mplexctl.contract.expect import Outcome, expected, model_outcome
from mplexctl.errors import HostError, PrivilegeError


@dataclass(frozen=True)
class Checked:
    exp: Expectation
    kernel: Outcome
    model: Outcome

    @property
    def expected(self) -> Outcome:
        return expected(self.exp)

    @property
    def ok(self) -> bool:
        return self.kernel == self.expected

    @property
    def agree(self) -> bool:
        return self.kernel == self.model

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.exp.index,
            "name": self.exp.name,
            "line": self.exp.line,
            "ok": self.ok,
            "expected": expected(self.exp).as_dict(),
            "kernel": self.kernel.as_dict(),
            "model": self.model.as_dict(),
            "model_agrees": self.agree,
        }


@dataclass(frozen=True)
class ProveReport:
    file: str
    generation: str
    prog_id: int  # the id the program had while it was loaded (gone when test returns)
    results: tuple[Checked, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "generation": self.generation,
            "prog_id": self.prog_id,
            "expectations": [r.as_dict() for r in self.results],
        }


def prove_file(path: str) -> ProveReport:
    config = load_config(path, expectations=False)  # failed expectations are ours to report
    build = compile_config(config)
    if os.geteuid() != 0:
        raise PrivilegeError("mplexctl test loads FILE's program into the kernel")
    from mplexctl.backend.loader import compile_and_load
    from mplexctl.backend.program import ProgramMaps
    from mplexctl.backend.testrun import run_expectations

    loaded = compile_and_load(build)
    try:
        pm = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
        pm.fill(build)
        kernel = run_expectations(loaded.prog_fd, pm, build)
    finally:
        loaded.close()
    results = tuple(Checked(k.exp, k.got, model_outcome(config, k.exp)) for k in kernel)
    return ProveReport(path, build.generation, pm.prog_id, results)


def live_config() -> tuple[Config, str]:
    """The configuration the mplex program of this network namespace carries, read back from
    its maps (for `explain --pcap --diff-live`), and where it runs."""
    from mplexctl.engine.probe import probe

    if os.geteuid() != 0:
        raise PrivilegeError("--diff-live reads the live program's maps")
    states = probe().mplex_interfaces()
    if not states:
        raise HostError("no mplex program is attached in this network namespace: nothing live")
    prog = states[0].program
    assert prog is not None
    services = tuple(
        Service(
            name=s.name,
            protocol=s.protocol,
            port=s.port,
            windows=tuple(Window(lo, hi) for lo, hi in s.windows),
            tag=TagSpec(s.tag_offset, s.tag_length),
            table=s.routes,
            unmatched=s.unmatched,
        )
        for s in prog.services
    )
    where = ", ".join(f"{s.name} (generation {s.program.generation})" for s in states if s.program)
    return Config(interfaces=(), services=services, limits=Limits(), source="live"), where
