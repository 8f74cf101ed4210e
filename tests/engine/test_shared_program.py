"""One program and one set of maps for every interface of a namespace, against the kernel:
interfaces added and removed, modes mixed, one compile per apply (BPF_PROG_LOAD counted),
shared maps, per-interface counters under traffic, foreign programs, kill -9, migration."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mplexctl import constants as C
from mplexctl.backend import bpfsys
from mplexctl.compiler.build import compile_config
from mplexctl.config import load_config
from tests.support.foreign import attach_foreign
from tests.support.frames import tagged_udp as udp_frame
from tests.support.hosts import ROOT, Multi, route_of
from tests.support.netns import in_netns
from tests.support.previous_release import attach_previous

pytestmark = pytest.mark.kernel

MORE = (
    "  - name: other\n    protocol: tcp\n    port: 6000\n"
    "    payload_length: [{min: 10, max: 20}]\n    tag: {offset: 0, length: 1}\n"
    '    routes: {"a": 6001}\n'
)


def xdp_loads(m: Multi, cfg: Path, *extra: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run `apply` under strace: (XDP programs it loaded with BPF_PROG_LOAD, the result)."""
    trace = m.host.tmp / f"strace-{os.urandom(3).hex()}.txt"
    cmd = [sys.executable, "-m", "mplexctl", "apply", str(cfg), "--json", "--netns", m.host.ns]
    r = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=bpf", "-o", str(trace), *cmd, *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr + r.stdout
    loads = [ln for ln in trace.read_text().splitlines() if "BPF_PROG_LOAD" in ln]
    return sum("BPF_PROG_TYPE_XDP" in ln for ln in loads), r


def map_ids(prog_id: int) -> dict[str, int]:
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        ids = bpfsys.prog_info(fd).map_ids
    finally:
        os.close(fd)
    out = {}
    for map_id in ids:
        mfd = bpfsys.map_fd_by_id(map_id)
        try:
            out[bpfsys.map_info(mfd).name] = map_id
        finally:
            os.close(mfd)
    return out


def progs(m: Multi) -> dict[str, int]:
    return {name: row["prog_id"] for name, row in m.status().items()}


def send(m: Multi, peer: str, tags: list[bytes]) -> None:
    """Frames out of `peer` (sender netns) into its veth partner, one per tag."""
    with in_netns(m.sender_ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            s.bind((peer, 0))
            for tag in tags:
                s.send(udp_frame(tag))
        finally:
            s.close()


def test_one_program_for_1_then_3_then_2_interfaces(multi: Multi) -> None:
    a, b, c = multi.names
    loads, r = xdp_loads(multi, multi.config([a]))
    assert loads == 1
    first = progs(multi)[a]
    # Two interfaces added: the running program is attached to them, nothing is compiled.
    three = multi.config([a, b, c])
    loads, r = xdp_loads(multi, three)
    assert loads == 0 and '"compiles": 0' in r.stdout
    assert set(progs(multi).values()) == {first}
    # One shared set of maps: the same route map (and every other map) from each interface.
    assert map_ids(first)["mplex_routes"] > 0
    # A route change writes the shared maps once: one plan line, seen on every interface.
    routes = {"600": 5001, "601": 5099, "602": 5003}
    doc = multi.host.apply(multi.config([a, b, c], routes=routes))
    assert [(ch["interface"], ch["action"]) for ch in doc["plan"]] == [(f"{a},{b},{c}", "route")]
    assert doc["compiles"] == 0 and route_of(first, b"601") == 5099
    # A program swap compiles once and replaces the program on every interface.
    swap = multi.config([a, b, c], routes=routes, more_services=MORE)
    loads, r = xdp_loads(multi, swap)
    assert loads == 1
    now = progs(multi)
    assert len(set(now.values())) == 1 and first not in now.values()
    # One interface removed: detached alone, the others keep the program.
    doc = multi.host.apply(multi.config([a, c], routes=routes, more_services=MORE))
    assert {(ch["interface"], ch["action"]) for ch in doc["plan"]} == {
        (b, "detach"),
        (f"{a},{c}", "metadata"),
    }
    after = progs(multi)
    assert after[b] == 0 and after[a] == after[c] == now[a]
    assert multi.host.cli("diff", str(multi.config([a, c], routes=routes, more_services=MORE)))


def test_modes_mixed_and_a_mode_change_reattaches_one_interface(multi: Multi) -> None:
    a, b, _ = multi.names
    cfg = multi.config([a, b], {a: "native", b: "generic"})
    multi.host.apply(cfg)
    st = multi.status()
    assert (st[a]["mode"], st[b]["mode"]) == ("native", "generic")
    assert st[a]["prog_id"] == st[b]["prog_id"]
    doc = multi.host.apply(multi.config([a, b], {a: "native", b: "native"}))
    assert next((ch["interface"], ch["action"]) for ch in doc["plan"]) == (b, "mode-change")
    assert {ch["action"] for ch in doc["plan"]} == {"mode-change", "metadata"}
    assert doc["compiles"] == 0
    after = multi.status()
    assert (after[a]["mode"], after[b]["mode"]) == ("native", "native")
    assert after[a]["prog_id"] == after[b]["prog_id"] == st[a]["prog_id"]


def test_counters_per_interface_under_traffic(multi: Multi) -> None:
    a, b, c = multi.names
    multi.host.apply(multi.config([a, b, c], {b: "generic"}))
    send(multi, multi.peers[0], [b"600"] * 5 + [b"999"] * 2)
    send(multi, multi.peers[1], [b"600"] * 3 + [b"601"] * 4)
    frame = len(udp_frame(b"600"))
    st = multi.status()
    svc = {name: st[name]["services"]["telemetry"] for name in (a, b, c)}
    assert svc[a]["verdicts"]["rewrite"] == {"packets": 5, "bytes": 5 * frame}
    assert svc[a]["verdicts"]["drop_unknown_tag"]["packets"] == 2
    assert svc[b]["verdicts"]["rewrite"] == {"packets": 7, "bytes": 7 * frame}
    assert svc[b]["verdicts"]["drop_unknown_tag"]["packets"] == 0
    assert svc[c]["packets"] == 0
    # Route counters are the program's: summed over the interfaces (README).
    assert svc[a]["routes"]["600"]["packets"] == svc[c]["routes"]["600"]["packets"] == 8
    prom = multi.host.cli("status", "--prometheus").stdout
    line = f'mplex_service_packets_total{{interface="{b}",service="telemetry",verdict="rewrite"}} 7'
    assert line in prom
    # An interface removed and another added: the new one starts from zero.
    multi.host.apply(multi.config([a, c]))
    multi.host.apply(multi.config([a, b, c]))
    st = multi.status()
    assert st[b]["services"]["telemetry"]["packets"] == 0
    assert st[a]["services"]["telemetry"]["verdicts"]["rewrite"]["packets"] == 5


def test_foreign_program_on_one_of_three_interfaces(multi: Multi) -> None:
    a, b, c = multi.names
    multi.host.apply(multi.config([a, c]))
    before = progs(multi)
    attach_foreign(multi.host.ns, b)
    foreign = progs(multi)[b]
    res = multi.host.apply(multi.config([a, b, c], routes={"600": 5005}), ok=False)
    assert res["_rc"] == 4 and b in res["_stderr"] and "other_xdp" in res["_stderr"]
    assert progs(multi) == {a: before[a], b: foreign, c: before[c]}  # all left as they were
    assert route_of(before[a], b"600") == 5001
    forced = multi.host.apply(multi.config([a, b, c]), "--force")
    assert next((ch["interface"], ch["action"]) for ch in forced["plan"]) == (b, "replace-foreign")
    assert forced["compiles"] == 0 and set(progs(multi).values()) == {before[a]}


@pytest.mark.parametrize("point", ["after-load", "after-fill", "after-attach"])
def test_kill9_during_a_swap_of_three_interfaces_converges(multi: Multi, point: str) -> None:
    multi.host.apply(multi.config(multi.names))
    old = progs(multi)[multi.names[0]]
    swap = multi.config(multi.names, more_services=MORE)
    r = multi.host.cli("apply", str(swap), env={"MPLEXCTL_FAULT_KILL_AT": point})
    assert r.returncode == -9
    seen = progs(multi)
    if point == "after-attach":  # half-finished: the first interface runs the new program
        assert seen[multi.names[0]] != old and seen[multi.names[2]] == old
        diff = multi.host.cli("diff", str(swap))
        assert diff.returncode == 1 and "joins the program" in diff.stdout
    else:
        assert set(seen.values()) == {old}
    res = multi.host.apply(swap)
    assert res["verified"] and multi.host.cli("diff", str(swap)).returncode == 0
    # Finishing a half-done swap reuses the program already loaded: nothing compiled.
    assert res["compiles"] == (0 if point == "after-attach" else 1)
    now = progs(multi)
    assert len(set(now.values())) == 1 and old not in now.values()
    assert route_of(next(iter(now.values())), b"602") == 5003


@pytest.mark.parametrize("point", ["after-slots", "after-attach", "after-detach"])
def test_kill9_while_interfaces_come_and_go_converges(multi: Multi, point: str) -> None:
    a, b, c = multi.names
    start, end = ([a], [a, b, c]) if point != "after-detach" else ([a, b, c], [a, c])
    multi.host.apply(multi.config(start))
    prog = progs(multi)[a]
    cfg = multi.config(end)
    r = multi.host.cli("apply", str(cfg), env={"MPLEXCTL_FAULT_KILL_AT": point})
    assert r.returncode == -9
    assert multi.host.cli("diff", str(cfg)).returncode == 1
    res = multi.host.apply(cfg)
    assert res["verified"] and res["compiles"] == 0
    assert multi.host.cli("diff", str(cfg)).returncode == 0
    now = progs(multi)
    assert {now[n] for n in end} == {prog} and all(now[n] == 0 for n in set(multi.names) - set(end))
    second = multi.host.apply(cfg)
    assert second["changed"] is False


def test_migration_from_the_previous_per_interface_programs(multi: Multi) -> None:
    a, b, _ = multi.names
    cfg = multi.config([a, b], {b: "generic"})
    build = compile_config(load_config(str(cfg)))
    with in_netns(multi.host.ns):
        old = {a: attach_previous(build, a, "native"), b: attach_previous(build, b, "generic")}
    assert old[a] != old[b]
    st = multi.status()  # the previous release's programs are read as mplex's
    assert {st[n]["owner"] for n in (a, b)} == {"mplex"}
    send(multi, multi.peers[0], [b"600"] * 2)
    assert multi.status()[a]["services"]["telemetry"]["verdicts"]["rewrite"]["packets"] == 2
    loads, r = xdp_loads(multi, cfg)
    assert loads == 1
    acts = [line for line in r.stdout.splitlines() if '"action": "swap"' in line]
    assert len(acts) >= 2
    now = multi.status()
    assert now[a]["prog_id"] == now[b]["prog_id"] and now[a]["prog_id"] not in old.values()
    assert (now[a]["mode"], now[b]["mode"]) == ("native", "generic")
    assert multi.host.cli("diff", str(cfg)).returncode == 0
    assert route_of(now[a]["prog_id"], b"601") == 5002


def test_counters_of_an_interface_with_a_large_ifindex(multi: Multi) -> None:
    """ifindex >= IFINDEX_DIRECT: its counter slot lives in the small hash, not the array."""
    a = multi.names[0]
    big, peer = f"{a[:-1]}9", f"{multi.peers[0][:-1]}9"
    index = C.IFINDEX_DIRECT + 1000 + int.from_bytes(os.urandom(2), "big")
    subprocess.run(
        ["ip", "-n", multi.host.ns, "link", "add", big, "index", str(index),
         "type", "veth", "peer", "name", peer, "netns", multi.sender_ns],
        check=True,
    )  # fmt: skip
    subprocess.run(["ip", "-n", multi.host.ns, "link", "set", big, "up"], check=True)
    subprocess.run(["ip", "-n", multi.sender_ns, "link", "set", peer, "up"], check=True)
    multi.names.append(big)
    multi.host.apply(multi.config([a, big]))
    send(multi, multi.peers[0], [b"600"] * 2)
    send(multi, peer, [b"601"] * 3)
    st = multi.status()
    assert st[a]["services"]["telemetry"]["verdicts"]["rewrite"]["packets"] == 2
    assert st[big]["services"]["telemetry"]["verdicts"]["rewrite"]["packets"] == 3
    multi.host.apply(multi.config([a]))  # its slot is freed from the hash
    assert multi.host.cli("diff", str(multi.config([a]))).returncode == 0


def test_detach_one_interface_leaves_the_others(multi: Multi) -> None:
    a, b, c = multi.names
    cfg = multi.config([a, b, c])
    multi.host.apply(cfg)
    prog = progs(multi)[a]
    assert multi.host.cli("detach", b).returncode == 0
    assert progs(multi) == {a: prog, b: 0, c: prog}
    diff = multi.host.cli("diff", str(cfg), "--json")
    assert diff.returncode == 1 and '"action": "attach"' in diff.stdout
    again = multi.host.apply(cfg)
    assert again["compiles"] == 0 and progs(multi) == {a: prog, b: prog, c: prog}
    assert multi.host.cli("detach").returncode == 0
    assert set(progs(multi).values()) == {0}
