"""Expectations in the kernel: `mplexctl test`, and apply's check before every attach."""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mplexctl.backend import bpfsys
from mplexctl.compiler import layout
from tests.support.hosts import ROOT, Host

from .samples import EVERY_VERDICT, HEAD, config

pytestmark = pytest.mark.kernel
PROG_GET_NEXT_ID = 11
# apply with a wrong oracle: the model "agrees" with every expectation, so a wrong one gets
# past validate and only the kernel check (BPF_PROG_TEST_RUN before attach) can stop it.
WRONG_ORACLE = """
import sys
from mplexctl.contract import expect
expect.model_outcome = lambda config, exp: expect.expected(exp)
from mplexctl.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
WRONG = ('{protocol: udp, port: 5000, length: 292, tag: "600"}', "rewrite", 5002)


def prog_ids() -> set[int]:
    """Every BPF program id on the host (as `bpftool prog` lists them)."""
    out, cur = set(), 0
    while True:
        try:
            _, buf = bpfsys.sys_bpf(PROG_GET_NEXT_ID, struct.pack("<III", cur, 0, 0), "next id")
        except bpfsys.BpfError as exc:
            assert exc.errno == errno.ENOENT
            return out
        cur = struct.unpack_from("<I", buf.raw, 4)[0]
        out.add(cur)


def mplexctl(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    head = ["-c", code] if code else ["-m", "mplexctl"]
    return subprocess.run([sys.executable, *head, *args], capture_output=True, text=True, cwd=ROOT)


def write(tmp: Path, text: str) -> str:
    path = tmp / f"c{abs(hash(text)) % 10**8}.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root (BPF_PROG_LOAD, BPF_PROG_TEST_RUN)")


def test_mplexctl_test_passes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    path = write(tmp_path, config(EVERY_VERDICT, iface="nosuchif0"))  # no interface needed
    before = prog_ids()
    r = mplexctl("test", path, "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and len(doc["expectations"]) == len(EVERY_VERDICT)
    for e in doc["expectations"]:
        assert e["ok"] and e["model_agrees"] and e["kernel"] == e["expected"] == e["model"], e
    assert {e["kernel"]["verdict"] for e in doc["expectations"]} >= {"drop_malformed", "pass"}
    assert doc["prog_id"] not in before and doc["prog_id"] not in prog_ids()
    with pytest.raises(bpfsys.BpfError) as exc:
        bpfsys.prog_fd_by_id(doc["prog_id"])
    assert exc.value.errno == errno.ENOENT
    text = mplexctl("test", path)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == len(EVERY_VERDICT) + 1
    assert lines[0].endswith(
        ": expect[0] (case 0): ok, rewrite to port 5001 (kernel; the model agrees)"
    )
    assert f"{len(EVERY_VERDICT)} of {len(EVERY_VERDICT)} expectation(s) hold" in lines[-1]


def test_mplexctl_test_fails_with_1_and_invalid_with_2(tmp_path: Path) -> None:
    items = [*EVERY_VERDICT, WRONG]
    path = write(tmp_path, config(items))
    r = mplexctl("test", path)
    assert r.returncode == 1, r.stderr
    i = len(items) - 1
    assert (
        f": expect[{i}] (case {i}): got rewrite to port 5001, expected rewrite to port 5002 "
        "(kernel; the model agrees)"
    ) in r.stdout
    assert f"{len(items) - 1} of {len(items)} expectation(s) hold" in r.stdout
    doc = json.loads(mplexctl("test", path, "--json").stdout)
    assert [e["ok"] for e in doc["expectations"]].count(False) == 1
    bad = write(
        tmp_path, config([('{protocol: udp, port: 5000, length: 1, tag: "6"}', "pass", None)])
    )
    r = mplexctl("test", bad)
    assert r.returncode == 2 and "expect[0].packet.tag" in r.stderr and "Traceback" not in r.stderr


def _counters(st: dict[str, Any]) -> list[int]:
    out = []
    for svc in st["services"].values():
        out += [svc["packets"], svc["bytes"]]
        out += [c["packets"] for c in svc["verdicts"].values()]
        out += [r["packets"] + r["bytes"] for r in svc["routes"].values()]
    return out


def test_apply_runs_the_expectations_and_zeroes_their_counters(host: Host) -> None:
    path = write(host.tmp, config(EVERY_VERDICT, iface=host.xdp))
    res = host.apply(Path(path))
    assert res["changed"] and res["compiles"] == 1
    st = host.status()
    assert st["owner"] == "mplex" and set(st["services"]) == {"telemetry", "control"}
    assert not any(_counters(st)), st  # the test packets counted, then were zeroed
    from mplexctl.backend.program import ProgramMaps

    pm = ProgramMaps.open(st["prog_id"])  # every counter slot, not only the interfaces'
    assert pm is not None
    try:
        assert pm.service_counters() and not any(
            v != (0, 0) for v in pm.service_counters().values()
        )
        assert all(
            layout.route_port(v) and not any(v[8:])
            for vs in pm.route_entries().values()
            for v in vs
        )
    finally:
        pm.close()


def test_apply_whose_expectation_fails_in_the_kernel_changes_nothing(host: Host) -> None:
    wrong = write(host.tmp, config([*EVERY_VERDICT, WRONG], iface=host.xdp))
    assert mplexctl("validate", wrong).returncode == 2  # the true model stops it here
    r = mplexctl("apply", wrong, "--netns", host.ns, code=WRONG_ORACLE)
    assert r.returncode == 5, r.stderr
    assert "does not meet the file's expectations in the kernel" in r.stderr
    assert "got rewrite to port 5001, expected rewrite to port 5002 (kernel)" in r.stderr
    assert host.status()["prog_id"] == 0  # nothing attached

    good = write(host.tmp, config(EVERY_VERDICT, iface=host.xdp))
    host.apply(Path(good))
    before = host.status()
    # A program swap (limits change): the new program is proved before the atomic replace.
    swap = config([*EVERY_VERDICT, WRONG], iface=host.xdp).replace("routes: 1024", "routes: 2048")
    r = mplexctl("apply", write(host.tmp, swap), "--netns", host.ns, code=WRONG_ORACLE)
    assert r.returncode == 5, r.stderr
    after = host.status()
    assert (after["prog_id"], after["generation"]) == (before["prog_id"], before["generation"])
    assert host.cli("diff", good).returncode == 0


def test_map_only_change_is_checked_with_the_model(host: Host) -> None:
    good = write(host.tmp, config(EVERY_VERDICT, iface=host.xdp))
    host.apply(Path(good))
    prog = host.status()["prog_id"]
    moved = config([*EVERY_VERDICT], iface=host.xdp).replace('"600": 5001', '"600": 5009')
    r = host.cli("apply", write(host.tmp, moved))
    assert r.returncode == 2 and "expect[0] (case 0): got rewrite to port 5009" in r.stderr
    assert host.status()["prog_id"] == prog and host.cli("diff", good).returncode == 0


def test_adding_expectations_plans_empty(host: Host) -> None:
    base = HEAD.replace("IFACE", host.xdp).replace("expect:\n", "")
    first = host.apply(Path(write(host.tmp, base)))
    with_expect = Path(write(host.tmp, config(EVERY_VERDICT, iface=host.xdp)))
    assert host.cli("diff", str(with_expect)).returncode == 0
    second = host.apply(with_expect)
    assert (second["changed"], second["plan"], second["compiles"]) == (False, [], 0)
    assert second["generation"] == first["generation"]
    third = host.apply(with_expect)  # the recorded file: the no-op fast path
    assert (third["changed"], third["compiles"]) == (False, 0)
    assert host.status()["prog_id"] != 0


def test_pcap_replay_diff_live(host: Host, tmp_path: Path) -> None:
    """--diff-live: the capture replayed against the file and against what the live program
    carries, side by side; the live side is read back from the maps."""
    from scapy.utils import RawPcapWriter

    from mplexctl.config import parse_config
    from mplexctl.contract.packet import build_frame

    live_text = config(EVERY_VERDICT, iface=host.xdp)
    host.apply(Path(write(host.tmp, live_text)))
    new_text = live_text.replace('"600": 5001', '"600": 5009').replace(
        "port: 5001\n", "port: 5009\n"
    )
    new = write(host.tmp, new_text)
    cfg = parse_config(new_text)
    cap = tmp_path / "c.pcap"
    w = RawPcapWriter(str(cap), linktype=1)
    for e in cfg.expectations:
        w.write(build_frame(cfg, e.packet).frame)
    w.close()
    r = host.cli("explain", new, "--pcap", str(cap), "--diff-live", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {
        (x["service"], x["verdict"], x["port"]): (x["packets"], x["live_packets"])
        for x in doc["rows"]
    }
    assert rows[("telemetry", "rewrite", 5009)] == (1, 0)
    assert rows[("telemetry", "rewrite", 5001)] == (0, 1)
    assert rows[("control", "rewrite", 6001)] == (1, 1)
    assert host.xdp in doc["live"]
    text = host.cli("explain", new, "--pcap", str(cap), "--diff-live")
    assert "+1" in text.stdout and "-1" in text.stdout
    empty = host.cli("explain", new, "--pcap", str(cap), "--diff-live")
    host.cli("detach")
    gone = host.cli("explain", new, "--pcap", str(cap), "--diff-live")
    assert empty.returncode == 0 and gone.returncode == 3 and "nothing live" in gone.stderr
