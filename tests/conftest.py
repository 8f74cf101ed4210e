"""Shared fixtures (the labs come from tests/support/): the two-host `lab`; the appliance
`host`, its `wire` and `multi`; both YAML back ends; the `accel` switch. Kernel tests need
root (fail without it, never skip)."""

from __future__ import annotations

import compileall
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mplexctl.config import yamlsrc
from tests.support import hosts
from tests.support.hosts import Host, Multi, Wire
from tests.support.lab import Lab

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """History, pending confirmations and the watchdog's log go to a scratch directory of this
    run (inherited by every mplexctl the tests start), never /var/lib or /var/log.

    mplexctl's bytecode is compiled once here (into its gitignored __pycache__ directories, as
    an installed wheel has it): with PYTHONDONTWRITEBYTECODE=1 in the environment, every
    mplexctl the tests start (hundreds) would otherwise recompile the modules it imports.
    Sources newer than their .pyc are still compiled afresh by Python itself, so an edit
    during a session is never missed."""
    compileall.compile_dir(ROOT / "mplexctl", quiet=2)
    if not os.environ.get("MPLEXCTL_STATE_DIR"):
        scratch = tempfile.mkdtemp(prefix="mplexctl-tests-")
        os.environ["MPLEXCTL_STATE_DIR"] = os.path.join(scratch, "state")
        os.environ["MPLEXCTL_LOG_DIR"] = os.path.join(scratch, "log")
        _scratch.append(scratch)


def pytest_unconfigure(config: pytest.Config) -> None:
    for scratch in _scratch:
        shutil.rmtree(scratch, ignore_errors=True)


_scratch: list[str] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A kernel-marked test run without root is an error with a reason, never a silent skip."""
    if item.get_closest_marker("kernel") is not None and os.geteuid() != 0:
        pytest.fail(
            "this test is marked `kernel`: it needs root (BPF, network namespaces, XDP); "
            "run it as root, or deselect kernel tests with -m 'not kernel'",
            pytrace=False,
        )


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh two-namespace lab (src -> veth -> dst), deleted afterwards whatever happens."""
    with Lab() as fresh:
        yield fresh


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    """A fresh appliance netns with a veth pair (`host.xdp`, `host.peer`), deleted after."""
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (BPF, XDP, network namespaces)")
    with hosts.host(tmp_path) as h:
        yield h


@pytest.fixture
def wire(host: Host) -> Wire:
    """host.peer moved to a sender netns, with addresses: UDP flows to host.xdp."""
    return hosts.wire(host)


@pytest.fixture
def multi(host: Host) -> Multi:
    """Three more veth pairs in host.ns, their peers in a sender netns."""
    return hosts.multi(host)


@pytest.fixture(params=["libyaml", "python"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a parser-sensitive test with both YAML back ends (libyaml and pure Python)."""
    if request.param == "libyaml":
        if not getattr(yaml, "__with_libyaml__", False):
            pytest.skip("PyYAML built without libyaml")
        monkeypatch.setattr(yamlsrc, "_LOADER", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(yamlsrc, "_LOADER", yaml.SafeLoader)
    return str(request.param)


@pytest.fixture(params=["accel-on", "accel-off"])
def accel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test twice: with the accelerators (mplexctl/accel/) and without them
    (MPLEXCTL_ACCEL=0, which mplexctl run as a subprocess inherits). Equivalence-critical
    tests use it (`pytest.mark.usefixtures("accel")`): each shortcut is proven optional."""
    on = request.param == "accel-on"
    monkeypatch.setenv("MPLEXCTL_ACCEL", "1" if on else "0")
    return on
