"""Parts 2 and 3: trafgen -> veth -> receiving namespace, counted at the receiving sockets.

Configurations alternate inside each round (a round puts each one up, measures, takes it
down), so slow drift of this noisy VM spreads over all of them; figures are medians.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import configs, netlab
from benchmarks.report import PartResult
from benchmarks.setups import RX_SPEC, Setup, Switcher, flood_frames, valid_frames
from benchmarks.stats import median

THROUGHPUT = (
    Setup("a no program", "none"),
    Setup("b XDP_PASS native", "pass", "native"),
    Setup("b XDP_PASS generic", "pass", "generic"),
    Setup("c mplex native", "mplex", "native"),
    Setup("c mplex generic", "mplex", "generic"),
    Setup("b TC pass (tcx)", "tcpass", "tcx"),
    Setup("c mplex tc", "mplex", "tc"),
    Setup("b TC pass (clsact)", "tcpass", "clsact"),
    Setup("c mplex tc (clsact)", "mplex", "tc-clsact"),
    Setup("d nftables netdev ingress", "nft"),
)
FLOOD = THROUGHPUT
CHECK_PKTS = 600  # paced correctness run: every packet must arrive on its port


def _delta(a: dict[str, Any], b: dict[str, Any]) -> dict[int, tuple[int, int]]:
    return {
        int(p): (b["ports"][p][0] - a["ports"][p][0], b["ports"][p][1] - a["ports"][p][1])
        for p in a["ports"]
    }


def _counts(d: dict[int, tuple[int, int]], direct: bool) -> tuple[int, int, int]:
    """(valid on its backend port, on a wrong port, on the service port)."""
    ok = sum(d[p][0] for p in configs.BACKENDS.values())
    wrong = sum(d[p][1] for p in configs.BACKENDS.values())
    svc = d[configs.SERVICE_PORT][0] + d[configs.SERVICE_PORT][1]
    return ok, wrong, svc


def paced_check(lb: netlab.Lab, rx: netlab.Receiver, s: Setup, pkts: list[bytes]) -> str:
    """Send CHECK_PKTS frames slowly; '' when every count is exact, else what differed."""
    conf = netlab.trafgen_conf(lb.workdir, pkts, "check.cfg")
    csum0 = lb.snmp_udp()
    a = rx.sample()
    netlab.trafgen(lb, conf, num=CHECK_PKTS, gap="200us").wait(timeout=60)
    time.sleep(0.3)
    ok, wrong, svc = _counts(_delta(a, rx.sample()), s.direct)
    n_valid = sum(1 for p in pkts if p in valid_frames(s.direct)) * CHECK_PKTS // len(pkts)
    want_svc = CHECK_PKTS - n_valid if s.direct else 0
    csum_err = lb.snmp_udp()["InCsumErrors"] - csum0["InCsumErrors"]
    if (ok, wrong, svc, csum_err) == (n_valid, 0, want_svc, 0):
        return ""
    return (
        f"{s.name}: ok {ok}/{n_valid}, wrong {wrong}, "
        f"service port {svc}/{want_svc}, csum errors {csum_err}"
    )


def blast(lb: netlab.Lab, rx: netlab.Receiver, conf: str, seconds: float) -> dict[str, float]:
    tg = netlab.trafgen(lb, conf)
    try:
        time.sleep(0.5)
        a, c0, t0 = rx.sample(), netlab.cpu_times(), lb.tx_packets()
        time.sleep(seconds)
        b, c1, t1 = rx.sample(), netlab.cpu_times(), lb.tx_packets()
    finally:
        netlab.stop_trafgen(tg)
    time.sleep(0.3)
    dt = b["t"] - a["t"]
    d = _delta(a, b)
    ok = sum(d[p][0] for p in configs.BACKENDS.values())
    wrong = sum(d[p][1] for p in configs.BACKENDS.values())
    cpu_ns = (c1["sys"] + c1["softirq"] - c0["sys"] - c0["softirq"]) * netlab.jiffy_ns()
    return {
        "valid_pps": ok / dt,
        "wrong": wrong,
        "service_port": d[configs.SERVICE_PORT][0],
        "offered_pps": (t1 - t0) / dt,
        "cpu_ns_per_pkt": cpu_ns / max(t1 - t0, 1),
    }


def measure(
    setups: tuple[Setup, ...],
    make: Callable[[bool], list[bytes]],
    rounds: int,
    seconds: float,
) -> tuple[dict[str, list[dict[str, float]]], list[str]]:
    samples: dict[str, list[dict[str, float]]] = {s.name: [] for s in setups}
    errors: list[str] = []
    with netlab.lab() as lb:
        sw = Switcher(lb)
        rx = netlab.Receiver(lb, netlab.build_rx(lb.workdir), RX_SPEC)
        try:
            for r in range(rounds):
                for s in setups:
                    pkts = make(s.direct)
                    conf = netlab.trafgen_conf(lb.workdir, pkts)
                    sw.up(s)
                    try:
                        if r == 0:
                            err = paced_check(lb, rx, s, pkts)
                            if err:
                                errors.append(err)
                        m = blast(lb, rx, conf, seconds)
                        if not s.direct and (m["wrong"] or m["service_port"]):
                            errors.append(
                                f"{s.name}: {m['wrong']} wrong, {m['service_port']} on 5000"
                            )
                        samples[s.name].append(m)
                    finally:
                        sw.down(s)
        finally:
            rx.stop()
            sw.close()
    return samples, errors


def _med(xs: list[dict[str, float]], key: str) -> float:
    return median([x[key] for x in xs])


def run_throughput(quick: bool = False) -> PartResult:
    res = PartResult("2 e2e")
    samples, errors = measure(THROUGHPUT, valid_frames, 3, 1.5 if quick else 3.0)
    res.extra = {"samples": samples, "errors": errors}
    pps = {k: _med(v, "valid_pps") for k, v in samples.items()}
    base = pps["a no program"]
    for k, v in samples.items():
        note = (
            f"offered {_med(v, 'offered_pps'):,.0f} pps, cpu {_med(v, 'cpu_ns_per_pkt'):.0f} ns/pkt"
        )
        res.row(f"{k}: delivered", pps[k], "pps", pps[k] / base, note + "; ratio to a")
    res.check("counts exact (paced run) and none misrouted", "; ".join(errors) or "ok", not errors)
    for mode in ("native", "generic"):
        r = pps[f"c mplex {mode}"] / pps[f"b XDP_PASS {mode}"]
        res.check(f"mplex {mode} >= 0.9 x XDP_PASS {mode}", f"{r:.2f}x", r >= 0.9)
    r = pps["c mplex tc"] / pps["b TC pass (tcx)"]
    res.check("mplex tc >= 0.9 x TC pass", f"{r:.2f}x", r >= 0.9)
    best = max(pps["c mplex native"], pps["c mplex generic"])
    nft = pps["d nftables netdev ingress"]
    res.check("mplex (best mode) >= nftables", f"{best:,.0f} vs {nft:,.0f} pps", best >= nft)
    tc = pps["c mplex tc"]
    res.check("mplex tc >= 1.1 x nftables (issue 14)", f"{tc / nft:.2f}x", tc >= 1.1 * nft)
    cls = pps["c mplex tc (clsact)"]
    r = cls / pps["b TC pass (clsact)"]
    res.check("mplex tc (clsact) >= 0.9 x TC pass (clsact)", f"{r:.2f}x", r >= 0.9)
    res.check("(info) mplex tc (clsact) / nftables", f"{cls / nft:.2f}x", True)
    res.check("(info) mplex best / no program", f"{best / base:.2f}x", True)
    return res


def run_flood(quick: bool = False) -> PartResult:
    res = PartResult("3 flood")
    samples, errors = measure(FLOOD, flood_frames, 3, 1.5 if quick else 3.0)
    res.extra = {"samples": samples, "errors": errors}
    for k, v in samples.items():
        res.row(f"{k}: valid delivered", _med(v, "valid_pps"), "pps")
        res.row(f"{k}: sys+softirq per offered pkt", _med(v, "cpu_ns_per_pkt"), "ns",
                note=f"offered {_med(v, 'offered_pps'):,.0f} pps")  # fmt: skip
    res.check("counts exact (paced run) and none misrouted", "; ".join(errors) or "ok", not errors)
    cpu = {k: _med(v, "cpu_ns_per_pkt") for k, v in samples.items()}
    best = min(cpu["c mplex native"], cpu["c mplex generic"])
    nft = cpu["d nftables netdev ingress"]
    res.check("mplex CPU/pkt < nftables", f"{best:.0f} vs {nft:.0f} ns", best < nft)
    return res
