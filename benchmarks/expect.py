"""Part 7: what `expect:` costs. A no-op apply of a file with 100 expectations vs the same file
without them (the fast path never parses the file, so ~1.0), validate of a file with 1,000
expectations vs without (each one: a frame built and run through the model), and a cold apply
with 100 expectations vs without (each one also run in BPF_PROG_TEST_RUN before the attach).
Runs of the two files alternate, so both see the same machine; the figures are ratios."""

from __future__ import annotations

from benchmarks import configs, netlab
from benchmarks.control import cli, write
from benchmarks.report import PartResult
from benchmarks.stats import median

ROUTES = 1_000


def expectations(n: int) -> str:
    """n expectations over the bench service: rewrites, length drops, unknown tags."""
    backends = list(configs.BACKENDS.items())
    out = ["expect:"]
    for i in range(n):
        kind = i % 3
        tag, port = backends[i % len(backends)]
        if kind == 0:
            out += [
                f"  - name: backend {i}",
                f"    packet: {{protocol: udp, port: {configs.SERVICE_PORT}, length: 292, "
                f'tag: "{tag.decode()}"}}',
                "    verdict: rewrite",
                f"    port: {port}",
            ]
        elif kind == 1:
            out += [
                f"  - packet: {{protocol: udp, port: {configs.SERVICE_PORT}, "
                f"length: {280 + i % 10}}}",
                "    verdict: drop_length",
            ]
        else:
            out += [
                f"  - packet: {{protocol: udp, port: {configs.SERVICE_PORT}, length: 292, tag: "
                f'"hex:ff{i % 65536:04x}", ip: 6}}',
                "    verdict: drop_unknown_tag",
            ]
    return "\n".join(out) + "\n"


def _alternating(reps: int, a: list[str], b: list[str]) -> tuple[float, float]:
    xs, ys = [], []
    for _ in range(reps):
        xs.append(cli(*a)[0])
        ys.append(cli(*b)[0])
    return median(xs), median(ys)


def run_expect(quick: bool = False) -> PartResult:
    res = PartResult("7 expect")
    reps = 5 if quick else 11
    # Two appliances: one applied from the plain file, one from the file with expectations,
    # so no-op applies of the two can alternate run by run (a no-op needs its file applied).
    with netlab.lab() as lb, netlab.lab() as lb2:
        ns, dev = lb.ns_rx, lb.dev_rx
        base_text = configs.config_text(dev, ROUTES)
        plain = write(lb, "plain.yaml", base_text)
        e100 = write(lb, "e100.yaml", base_text + expectations(100))
        e1000 = write(lb, "e1000.yaml", base_text + expectations(1000))
        e100b = write(lb2, "e100.yaml", configs.config_text(lb2.dev_rx, ROUTES) + expectations(100))

        v0, v1 = _alternating(reps, ["validate", plain], ["validate", e1000])
        res.row("validate, no expectations", v0, "s")
        res.row("validate, 1,000 expectations", v1, "s", ratio=v1 / v0)
        res.check(
            "validate with 1,000 expectations <= 1.5 x without",
            f"{v1 / v0:.2f} x",
            v1 / v0 <= 1.5,
        )

        cli("apply", "--netns", ns, plain)
        cli("apply", "--netns", lb2.ns_rx, e100b)
        n0, n1 = _alternating(
            2 * reps, ["apply", "--netns", ns, plain], ["apply", "--netns", lb2.ns_rx, e100b]
        )
        res.row(f"no-op apply, {ROUTES} routes, no expectations", n0, "s")
        res.row(f"no-op apply, {ROUTES} routes, 100 expectations", n1, "s", ratio=n1 / n0)
        res.check(
            "no-op apply with 100 expectations <= 1.10 x without",
            f"{n1 / n0:.2f} x",
            n1 / n0 <= 1.10,
        )
        cli("detach", "--netns", lb2.ns_rx)

        cold: dict[str, list[float]] = {plain: [], e100: []}
        for _ in range(2 if quick else 3):
            for path in (plain, e100):
                cli("detach", "--netns", ns)
                cold[path].append(cli("apply", "--netns", ns, path)[0])
        c0, c1 = median(cold[plain]), median(cold[e100])
        res.row("cold apply, no expectations", c0, "s")
        res.row(
            "cold apply, 100 expectations (run in the kernel before attach)", c1, "s", ratio=c1 / c0
        )
        cli("detach", "--netns", ns)
    return res
