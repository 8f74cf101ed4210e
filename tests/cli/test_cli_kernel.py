"""The CLI against a real kernel, in a network namespace of its own: every verb's --json
document (README: --json output), the papercuts that need an attached program, and
mplexctl run without privileges (exit 3, one message)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mplexctl.errors import NEEDS_ROOT
from tests.cli.jsondoc import ROOT, check
from tests.support.foreign import attach_foreign
from tests.support.netns import Netlab, ip

pytestmark = pytest.mark.kernel
EXAMPLE = ROOT / "configs" / "example.yaml"
PROMETHEUS = ("status", "--prometheus")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@dataclass
class Ns:
    name: str
    xdp: str  # carries mplex
    spare: str  # carries nothing, or a foreign program
    dir: Path  # world-readable: the configs (also for the unprivileged runs)

    def config(self, *, generic: bool = True) -> Path:
        text = EXAMPLE.read_text().replace("veth-mplex0", self.xdp)
        if generic:
            text = text.replace("xdp_mode: auto", "xdp_mode: generic")
        path = self.dir / f"cfg-{secrets.token_hex(3)}.yaml"
        path.write_text(text)
        path.chmod(0o644)
        return path

    def run(self, *argv: str, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        """mplexctl inside the namespace (entered as root by `ip netns exec`), as `user`."""
        cmd = ["ip", "netns", "exec", self.name, *(user or []), sys.executable, "-m", "mplexctl"]
        r = subprocess.run([*cmd, *argv], capture_output=True, text=True, cwd=ROOT)
        for text in (r.stdout, r.stderr):
            assert "internal error" not in text and "Traceback" not in text, (argv, text)
        return r


@pytest.fixture
def ns() -> Iterator[Ns]:
    """A fresh netns with a veth pair inside (tests/support/netns.py), deleted afterwards."""
    with Netlab("mpxc") as net:
        n = Ns(net.tag, f"mc{net.hex}", f"mr{net.hex}", Path(tempfile.mkdtemp(prefix="mpxc-")))
        try:
            n.dir.chmod(0o755)
            net.add_netns(n.name)
            net.add_veth(n.name, n.xdp, n.name, n.spare)
            yield n
        finally:
            shutil.rmtree(n.dir, ignore_errors=True)


def test_json_documents_of_the_verbs_that_touch_the_kernel(ns: Ns) -> None:
    cfg = str(ns.config())
    doc = check(ns.run("apply", "--json", cfg).stdout, "apply", 0)
    assert doc["changed"] is True and doc["verified"] is True
    svc = doc["after"]["interfaces"][ns.xdp]["services"]["telemetry"]
    assert svc["windows"] == [{"min": 290, "max": 294}] and svc["routes"]["600"] == 5001
    doc = check(ns.run("--json", "apply", "--check", cfg).stdout, "apply", 0)
    assert doc["changed"] is False and doc["check"] is True
    doc = check(ns.run("diff", "--json", cfg).stdout, "diff", 0)
    assert doc["changed"] is False
    doc = check(ns.run("status", "--json").stdout, "status", 0)
    (row,) = doc["interfaces"]
    assert row["interface"] == ns.xdp and row["owner"] == "mplex" and row["mode"] == "generic"
    doc = check(ns.run("detach", "--json").stdout, "detach", 0)
    assert doc["detached"] == [ns.xdp] and doc["changed"] is True
    doc = check(ns.run("status", "--json", ns.xdp).stdout, "status", 0)
    assert doc["interfaces"][0]["owner"] == "none"


def test_global_options_before_the_verb(ns: Ns) -> None:
    cfg = str(ns.config())
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", "--netns", ns.name, "--json", "apply", cfg],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", "--netns", ns.name, "status", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert check(r.stdout, "status", 0)["interfaces"][0]["interface"] == ns.xdp


def test_apply_check_with_nothing_to_do_says_it_once(ns: Ns) -> None:
    cfg = str(ns.config())
    assert ns.run("apply", cfg).returncode == 0
    r = ns.run("apply", "--check", cfg)
    assert (r.returncode, r.stdout) == (0, "no changes\n")


def test_diff_with_a_foreign_program_exits_2_without_advice_it_cannot_take(ns: Ns) -> None:
    cfg = ns.config(generic=False)
    attach_foreign(ns.name, ns.xdp)
    r = ns.run("diff", str(cfg))
    assert r.returncode == 2 and "not attached by mplex" in r.stderr and "--force" not in r.stderr
    r = ns.run("diff", "--json", str(cfg))
    doc = check(r.stdout, "failure", 2)
    assert r.returncode == 2 and "--force" not in doc["msg"]
    r = ns.run("apply", str(cfg))  # apply takes --force: it says so
    assert r.returncode == 4 and "use --force to replace it" in r.stderr


def test_status_prometheus_into_a_full_disk_is_exit_3(ns: Ns) -> None:
    assert ns.run("apply", str(ns.config())).returncode == 0
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            ["ip", "netns", "exec", ns.name, sys.executable, "-m", "mplexctl", *PROMETHEUS],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
    assert r.returncode == 3
    assert r.stderr == "mplexctl: error: cannot write the output: No space left on device\n"


@pytest.mark.parametrize(
    "argv",
    [
        ("status",),
        ("status", "--json"),
        ("apply", "@CFG@"),
        ("apply", "--check", "@CFG@"),
        ("diff", "@CFG@"),
        ("detach",),
        ("detach", "@XDP@"),
    ],
    ids=" ".join,
)
def test_without_privileges_one_message_exit_3(ns: Ns, argv: tuple[str, ...]) -> None:
    cfg = str(ns.config())
    assert ns.run("apply", cfg).returncode == 0  # something is attached
    args = [a.replace("@CFG@", cfg).replace("@XDP@", ns.xdp) for a in argv]
    r = ns.run(*args, user=NOBODY)
    code = 2 if argv[0] == "diff" else 3  # diff: any error is 2, as diff(1)
    assert r.returncode == code, r.stderr
    assert r.stderr.startswith(f"mplexctl: error: {NEEDS_ROOT}"), r.stderr
    if "--json" in argv:
        assert check(r.stdout, "failure", code)["msg"].startswith(NEEDS_ROOT)
    assert ns.run("status", "--json").returncode == 0  # and the program is still there
    assert (
        check(ns.run("status", "--json").stdout, "status", 0)["interfaces"][0]["owner"] == "mplex"
    )


def test_netns_as_non_root_is_the_same_message(ns: Ns) -> None:
    r = subprocess.run(
        [*NOBODY, sys.executable, "-m", "mplexctl", "--netns", ns.name, "status"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HOME": "/"},
    )
    assert r.returncode == 3 and r.stderr.startswith(f"mplexctl: error: {NEEDS_ROOT}"), r.stderr


def test_missing_interface_names_the_namespace(ns: Ns) -> None:
    cfg = ns.dir / "missing.yaml"
    cfg.write_text(EXAMPLE.read_text().replace("veth-mplex0", "mpxnosuch0"))
    r = ns.run("apply", str(cfg))
    assert r.returncode == 3
    assert f"not in network namespace '{ns.name}': mpxnosuch0" in r.stderr, r.stderr


def test_attaching_to_an_interface_that_is_down_warns(ns: Ns) -> None:
    ip("-n", ns.name, "link", "set", ns.xdp, "down")
    r = ns.run("apply", str(ns.config()))
    assert r.returncode == 0, r.stderr
    assert f"mplexctl: warning: {ns.xdp} is down" in r.stderr
    doc = check(ns.run("status", "--json").stdout, "status", 0)
    assert doc["interfaces"][0]["owner"] == "mplex"  # attached all the same


def test_auto_after_generic_says_it_keeps_generic(ns: Ns) -> None:
    assert ns.run("apply", str(ns.config(generic=True))).returncode == 0
    auto = ns.config(generic=False)
    r = ns.run("apply", "--check", str(auto))
    assert r.returncode == 0 and "xdp_mode auto keeps the running generic mode" in r.stdout
    r = ns.run("diff", "--json", str(auto))
    assert r.returncode in (0, 1)  # 1: only the generation's metadata differs
    doc = check(r.stdout, "diff", r.returncode)
    assert any("keeps the running generic mode" in n for n in doc["notes"])


def test_test_document(ns: Ns) -> None:
    r = ns.run("test", "--json", str(EXAMPLE))
    doc = check(r.stdout, "test", 0)
    assert doc["ok"] is True and doc["expectations"]


def test_a_limits_change_names_exactly_the_values_read_from_the_live_maps(ns: Ns) -> None:
    cfg = ns.config()
    assert ns.run("apply", str(cfg)).returncode == 0
    same = ns.dir / "same-limits.yaml"
    same.write_text(cfg.read_text() + "limits: {routes: 65536, windows: 8}\n")
    r = ns.run("diff", str(same))  # the defaults written out: the same program
    assert "program swap" not in r.stdout, r.stdout
    small = ns.dir / "small-limits.yaml"
    small.write_text(cfg.read_text() + "limits: {routes: 1024}\n")
    r = ns.run("diff", str(small))
    assert r.returncode == 1 and "[program swap (counters restart)]" in r.stdout, r.stdout
    assert "(limits.routes 65536 -> 1024)" in r.stdout and "windows" not in r.stdout
