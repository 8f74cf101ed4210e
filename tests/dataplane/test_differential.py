"""Differential test: the loaded program against the reference model, frame by frame, for
each hook: the XDP entry, and the TC ingress entry (hook: tc, BPF_PROG_TEST_RUN on a
SCHED_CLS program) of the same source, against the same model and corpus.

For each config the program is compiled and loaded once (not attached), its maps filled, and
every generated frame is run through BPF_PROG_TEST_RUN with repeat=1 (a repeat > 1 would run
later iterations on the already rewritten buffer).  Verdict, output bytes and, at the end, the
per-service verdict counters must equal the model's.

Output bytes are compared for every verdict: test_run hands back the frame buffer for XDP_DROP
as well (checked: the program leaves it untouched), so a dropped frame must come back equal to
its input, which is the model's output frame for a drop.  Frames shorter than an Ethernet
header are rejected by the kernel (EINVAL) before the program runs: for those only the model
is checked (it must say pass). For a SCHED_CLS program the kernel also rejects an IPv4 or
IPv6 frame shorter than its IP header (it builds an skb and reads that header): the same.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mplexctl import constants as C
from mplexctl.backend.bpfsys import BpfError, prog_test_run
from mplexctl.backend.loader import Loaded, compile_and_load
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler.build import Build, compile_config
from mplexctl.config import parse_config
from mplexctl.config.model import Config
from mplexctl.contract.model import ETH_HLEN, ModelResult, Tally, run_model

from .configs import CONFIGS, load
from .frames import FrameGen, seed_for

pytestmark = [
    pytest.mark.kernel,
    # bcc warns (with the whole C source) that the program text is str, not bytes.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

# Random frames per config, on top of the deterministic sweeps (MPLEX_DIFF_FRAMES overrides;
# MPLEX_DIFF_SEED picks another set of frames, see frames.seed_for).
RANDOM_FRAMES = int(os.environ.get("MPLEX_DIFF_FRAMES", "12000"))
MIN_KERNEL_FRAMES = 10_000
SHOW_MISMATCHES = 8
ACTIONS = {
    "xdp": {"drop": C.XDP_DROP, "pass": C.XDP_PASS},
    "tc": {"drop": C.TC_ACT_SHOT, "pass": C.TC_ACT_UNSPEC & 0xFFFFFFFF},  # retval is a u32
}
ENTRIES = {"xdp": C.PROG_NAME, "tc": C.PROG_TC_IN}
# Shortest frames of these EtherTypes a SCHED_CLS test run accepts (Ethernet + IP header).
SKB_MIN_LEN = {b"\x08\x00": ETH_HLEN + 20, b"\x86\xdd": ETH_HLEN + 40}


@dataclass
class Program:
    name: str
    config: Config
    build: Build
    loaded: Loaded
    maps: ProgramMaps
    hook: str  # xdp | tc

    @property
    def fd(self) -> int:
        return self.loaded.fds[ENTRIES[self.hook]]

    def action(self, retval: int) -> str:
        names = {v: k for k, v in ACTIONS[self.hook].items()}
        return names.get(retval, f"retval {retval}")

    def refused(self, frame: bytes) -> bool:
        """Whether the kernel's test run refuses the frame before the program runs."""
        if len(frame) < ETH_HLEN:
            return True
        return self.hook == "tc" and len(frame) < SKB_MIN_LEN.get(frame[12:14], 0)


def hook_config(name: str, hook: str) -> Config:
    """Config `name` with its interface at `hook` (the services and routes unchanged)."""
    if hook == "xdp":
        return load(name)
    text = CONFIGS[name].replace("xdp_mode: auto", "hook: tc")
    assert "hook: tc" in text
    return parse_config(text, f"{name}-tc.yaml")


@pytest.fixture(
    scope="module",
    params=[(name, hook) for name in sorted(CONFIGS) for hook in ("xdp", "tc")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def program(request: pytest.FixtureRequest) -> Iterator[Program]:
    if os.geteuid() != 0:
        pytest.fail("the differential test needs root (BPF_PROG_LOAD / BPF_PROG_TEST_RUN)")
    name, hook = request.param
    config = hook_config(name, hook)
    build = compile_config(config)
    loaded = compile_and_load(build)
    maps = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
    try:
        maps.fill(build)
        yield Program(name, config, build, loaded, maps, hook)
    finally:
        loaded.close()


def _describe(
    program: Program, label: str, frame: bytes, model: ModelResult, retval: int, data: bytes
) -> str:
    lines = [
        f"[{label}] frame ({len(frame)} bytes): {frame.hex()}",
        f"  model:  {model.action} service={model.service} verdict={model.verdict}",
        f"  kernel ({program.hook}): {program.action(retval)}",
    ]
    if data != model.frame:
        diff = [
            i
            for i in range(max(len(data), len(model.frame)))
            if data[i : i + 1] != model.frame[i : i + 1]
        ]
        lines.append(
            f"  output differs at byte offsets {diff[:16]} (lengths "
            f"model {len(model.frame)}, kernel {len(data)})"
        )
        lines.append(f"  model output:  {model.frame.hex()}")
        lines.append(f"  kernel output: {data.hex()}")
    return "\n".join(lines)


def test_program_matches_model(program: Program) -> None:
    """Every frame: same action and same output bytes; then the same counters."""
    gen = FrameGen(program.config, seed_for(program.name))
    tally = Tally()
    mismatches: list[str] = []
    ran = 0
    for case in gen.cases(RANDOM_FRAMES):
        model = run_model(program.config, case.frame)
        if program.refused(case.frame):
            assert model.action == "pass" and model.verdict is None, case.frame.hex()
            with pytest.raises(BpfError) as exc:
                prog_test_run(program.fd, case.frame, repeat=1)
            assert exc.value.errno == errno.EINVAL
            continue
        run = prog_test_run(program.fd, case.frame, repeat=1)
        ran += 1
        tally.add(model, len(case.frame))
        if run.retval != ACTIONS[program.hook][model.action] or run.data != model.frame:
            mismatches.append(
                _describe(program, case.label, case.frame, model, run.retval, run.data)
            )
    assert ran >= min(MIN_KERNEL_FRAMES, RANDOM_FRAMES)
    assert not mismatches, (
        f"{len(mismatches)} of {ran} frames differ between the {program.hook} program and the "
        "model "
        f"(first {SHOW_MISMATCHES}):\n" + "\n".join(mismatches[:SHOW_MISMATCHES])
    )

    names = {s.index: s.name for s in program.build.services}
    kernel = {
        (names[svc], C.VERDICTS[verdict]): value
        for (svc, verdict), value in program.maps.service_counters().items()
        if value != (0, 0)
    }
    expected = tally.as_dict()
    diff = {
        k: (expected.get(k), kernel.get(k))
        for k in expected.keys() | kernel.keys()
        if expected.get(k) != kernel.get(k)
    }
    assert not diff, f"counters differ, (service, verdict): (model, kernel) = {diff}"


def test_kernel_rejects_frames_shorter_than_ethernet(program: Program) -> None:
    """Why short frames are checked against the model only: the kernel never runs them."""
    for n in (0, 1, ETH_HLEN - 1):
        with pytest.raises(BpfError) as exc:
            prog_test_run(program.fd, b"\x01" * n, repeat=1)
        assert exc.value.errno == errno.EINVAL
        assert run_model(program.config, b"\x01" * n).action == "pass"
    assert prog_test_run(program.fd, b"\x01" * ETH_HLEN).retval == ACTIONS[program.hook]["pass"]
