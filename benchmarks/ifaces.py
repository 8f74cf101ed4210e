"""Part 6: one program for every interface of a namespace (1 / 4 / 8 veth interfaces).

Control plane (mplexctl CLI wall times, medians): cold apply, program swap (a service added or
removed), one-route change; kernel memory of the program's maps from fdinfo `memlock`. Each
figure at 8 interfaces is compared with the same figure at 1 interface, in one run.
Packet path: BPF_PROG_TEST_RUN rewrite and non-service cost over the XDP_PASS floor, for this
program and the previous release's (tests/support/previous), rounds alternating.
End to end: the same program on two veths receiving paced UDP streams at once; each stream's
datagrams must all arrive on its route's port.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from benchmarks import configs, testrun
from benchmarks.control import cli, fdinfo_memlock
from benchmarks.report import PartResult
from benchmarks.stats import median, run
from mplexctl.backend import bpfsys
from tests.support.netns import Netlab, link_mac

COUNTS = (1, 4, 8)
EXTRA_SERVICE = (
    "  - name: extra\n    protocol: udp\n    port: 7000\n"
    "    payload_length:\n      - {min: 10, max: 20}\n    tag: {offset: 0, length: 1}\n"
    '    routes:\n      "a": 7001\n'
)


@dataclass
class ManyLab:
    """Appliance netns `ns` with veths `devs[i]`; their peers `peers[i]` in `ns_tx`."""

    ns: str
    ns_tx: str
    devs: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    workdir: str = ""

    def dst_ip(self, i: int) -> str:
        return f"10.78.{i}.2"

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.workdir, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path


@contextmanager
def many_lab(n: int = max(COUNTS)) -> Iterator[ManyLab]:
    """n veth pairs between an appliance netns and a sender netns (tests/support/netns.py)."""
    with Netlab("mpxb", hex_digits=6) as net:
        h = net.hex
        lb = ManyLab(f"mpxb-{h}-mi", f"mpxb-{h}-mt", workdir=tempfile.mkdtemp(prefix=f"mpxb-{h}-"))
        try:
            net.add_netns(lb.ns)
            net.add_netns(lb.ns_tx)
            for i in range(n):
                dev, peer = f"mpxb{h}r{i}", f"mpxb{h}t{i}"
                net.add_veth(lb.ns_tx, peer, lb.ns, dev)
                net.address(lb.ns, dev, f"{lb.dst_ip(i)}/24")
                net.address(lb.ns_tx, peer, f"10.78.{i}.1/24")
                net.offloads_off(lb.ns_tx, peer, "tx")
                net.neighbour(lb.ns_tx, peer, lb.dst_ip(i), link_mac(lb.ns, dev))
                lb.devs.append(dev)
                lb.peers.append(peer)
            yield lb
        finally:
            shutil.rmtree(lb.workdir, ignore_errors=True)


def config(devs: list[str], *, extra: bool = False, first_port: int | None = None) -> str:
    """configs.config_text (10 routes, generic mode) for every interface in `devs`."""
    text = configs.config_text(devs[0], 10, "generic", first_port=first_port)
    one = f"  - name: {devs[0]}\n    xdp_mode: generic\n"
    text = text.replace(one, "".join(f"  - name: {d}\n    xdp_mode: generic\n" for d in devs))
    if extra:
        text = text.replace("limits:\n", EXTRA_SERVICE + "limits:\n")
    return text


def maps_memlock(prog_id: int) -> int:
    """Bytes of kernel memory (fdinfo memlock) of every map of program prog_id."""
    fd = bpfsys.prog_fd_by_id(prog_id)
    try:
        ids = bpfsys.prog_info(fd).map_ids
    finally:
        os.close(fd)
    total = 0
    for map_id in ids:
        mfd = bpfsys.map_fd_by_id(map_id)
        try:
            total += fdinfo_memlock(mfd)
        finally:
            os.close(mfd)
    return total


def prog_ids(lb: ManyLab, devs: list[str]) -> set[int]:
    out = run(["ip", "-n", lb.ns, "-j", "link", "show"])
    return {
        int(link.get("xdp", {}).get("prog", {}).get("id", 0))
        for link in json.loads(out)
        if link["ifname"] in devs
    }


def control(lb: ManyLab, res: PartResult, quick: bool) -> None:
    """Rounds alternate the interface counts (1, 4, 8, 1, 4, 8, ...), so that a slow spell of
    the shared machine does not land on one count only."""
    reps = 3 if quick else 5
    files = {
        n: (
            lb.write(f"n{n}.yaml", config(lb.devs[:n])),
            lb.write(f"n{n}-swap.yaml", config(lb.devs[:n], extra=True)),
            lb.write(f"n{n}-one.yaml", config(lb.devs[:n], first_port=5101)),
        )
        for n in COUNTS
    }
    samples: dict[str, dict[int, list[float]]] = {}

    def timed(label: str, n: int, path: str) -> None:
        samples.setdefault(label, {}).setdefault(n, []).append(
            cli("apply", "--netns", lb.ns, path)[0]
        )

    memory: dict[int, float] = {}
    for _ in range(reps):
        for n in COUNTS:
            base, swap, one = files[n]
            cli("detach", "--netns", lb.ns)
            timed("cold apply", n, base)
            timed("program swap", n, swap)  # a service added
            timed("program swap", n, base)  # and removed again
            timed("one-route change", n, one)
            cli("apply", "--netns", lb.ns, base)
            ids = prog_ids(lb, lb.devs[:n])
            if len(ids) != 1 or 0 in ids:
                raise RuntimeError(f"{n} interfaces run programs {sorted(ids)}, not one")
            memory[n] = maps_memlock(ids.pop()) / 2**20
    cli("detach", "--netns", lb.ns)
    figures = {label: {n: median(xs) for n, xs in by_n.items()} for label, by_n in samples.items()}
    figures["map memory"] = memory
    for label, by_n in figures.items():
        for n, value in by_n.items():
            unit = "MiB" if label == "map memory" else "s"
            res.row(f"{label}, {n} interface(s)", value, unit, ratio=value / by_n[COUNTS[0]])
    res.extra["control_samples_s"] = samples
    for label, limit in (
        ("cold apply", 1.2),
        ("program swap", 1.2),
        ("one-route change", 1.1),
        ("map memory", 1.05),
    ):
        r = figures[label][8] / figures[label][1]
        res.check(f"{label} at 8 interfaces <= {limit} x at 1", f"{r:.2f}x", r <= limit)


def packet_path(res: PartResult, quick: bool) -> None:
    """Rewrite and non-service cost over the floor: this program vs the previous release's."""
    from bcc import BPF

    from mplexctl.backend.program import ProgramMaps
    from mplexctl.compiler import layout
    from mplexctl.compiler.build import RouteEntry, compile_config
    from mplexctl.config import parse_config
    from tests.support import previous_release

    repeat = 200_000 if quick else 1_000_000
    rounds = 5 if quick else 9
    build = compile_config(parse_config(configs.config_text("mpxb-tr0", 3), "bench.yaml"))
    trivial = BPF(text=testrun.PASS_SRC)
    floor_fd = trivial.load_func("xdp_pass", BPF.XDP).fd
    new_ld, new_pm, new_fd = testrun.load_mplex(3)
    old_ld, old_pm = previous_release.load(build)
    errors: list[str] = []
    try:
        progs: dict[str, tuple[int, ProgramMaps]] = {
            "this": (new_fd, new_pm),
            "previous": (old_ld.prog_fd, old_pm),
        }
        for label, (fd, pm) in progs.items():
            testrun.check_real(fd, errors, label)
            key = RouteEntry(0, b"600", configs.SERVICE_PORT).key(0)
            pm.write_routes([(key, layout.route_value(configs.SERVICE_PORT))])
        samples: dict[str, list[float]] = {}
        for r in range(rounds):
            order = list(progs.items()) if r % 2 else list(reversed(progs.items()))
            for kind in testrun.KINDS:
                floor = testrun.frame_for("rewrite", kind)
                name = f"floor {kind}"
                samples.setdefault(name, []).append(
                    bpfsys.prog_test_run(floor_fd, floor, repeat).duration_ns
                )
                for label, (fd, _pm) in order:
                    for path in ("rewrite", "non_service"):
                        fr = testrun.frame_for(path, kind)
                        samples.setdefault(f"{label} {path} {kind}", []).append(
                            bpfsys.prog_test_run(fd, fr, repeat).duration_ns
                        )
        ns = {k: median(v) for k, v in samples.items()}
        res.extra["testrun_samples_ns"] = samples
        worst: dict[str, float] = {}
        for label in progs:
            for path in ("rewrite", "non_service"):
                for kind in testrun.KINDS:
                    v = ns[f"{label} {path} {kind}"]
                    ratio = v / ns[f"floor {kind}"]
                    which = f"{label} {path}"
                    worst[which] = max(worst.get(which, 0.0), ratio)
                    res.row(f"test_run {path}, {kind}, {label} program", v, "ns/pkt", ratio)
        res.check("test_run correctness (repeat=1)", "; ".join(errors) or "ok", not errors)
        for path in ("rewrite", "non_service"):
            new, old = worst[f"this {path}"], worst[f"previous {path}"]
            # The kernel reports whole ns: at ~33 ns, 1 ns is 3 %. Per kind, this program may
            # exceed the previous one by 5 % or 1 ns, whichever is larger.
            slack = [
                ns[f"this {path} {k}"]
                - ns[f"previous {path} {k}"]
                - max(1.0, 0.05 * ns[f"previous {path} {k}"])
                for k in testrun.KINDS
            ]
            res.check(
                f"test_run {path}: this <= previous (each kind, 5 % or 1 ns)",
                f"worst over the floor {new:.2f}x vs {old:.2f}x",
                max(slack) <= 0,
            )
    finally:
        new_ld.close()
        old_ld.close()
        trivial.cleanup()


def e2e_two(lb: ManyLab, res: PartResult, quick: bool) -> None:
    """Two interfaces running the same program receive paced streams at once."""
    from tests.support.traffic import Stream

    devs = lb.devs[:2]
    cli("apply", "--netns", lb.ns, lb.write("e2e.yaml", config(devs)))
    pps, seconds = 2000, (2 if quick else 4)
    tags = {0: ("600", 5001), 1: ("601", 5002)}
    streams = {i: Stream(lb.ns, lb.ns_tx, lb.dst_ip(i), [5000, 5001, 5002]) for i in tags}
    for i, (tag, _port) in tags.items():
        streams[i].start(tag, pps * seconds, pps)
    time.sleep(seconds + 1)  # both streams run at once (each stops at its count, or here)
    docs = {i: s.finish() for i, s in streams.items()}
    ok = True
    for i, doc in docs.items():
        counts = doc["counts"]
        assert isinstance(counts, dict)
        port = tags[i][1]
        got = counts[str(port)]
        sent = doc["sent"]
        ok &= isinstance(sent, int) and sent > 0 and got == sent and sum(counts.values()) == got
        res.row(f"e2e interface {i}: datagrams on port {port} / sent", got, "pkts", note=str(doc))
    res.check("e2e: two interfaces at once, every datagram on its route's port", str(docs), ok)
    cli("detach", "--netns", lb.ns)


def run_ifaces(quick: bool = False) -> PartResult:
    res = PartResult("6 interfaces")
    with many_lab() as lb:
        control(lb, res, quick)
        e2e_two(lb, res, quick)
    packet_path(res, quick)
    return res
