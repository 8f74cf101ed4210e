"""Config texts with expectations, shared by the contract tests (pure and kernel)."""

from __future__ import annotations

from tests.samples import BASE

# Two services: udp/5000 drops unknown tags, tcp/6000 passes them. Line numbers matter:
# expect[0] starts on line EXPECT_LINE, one item every 4 lines.
HEAD = (
    BASE.replace("{name: eth0}", "{name: IFACE}")
    + """\
  - name: control
    protocol: tcp
    port: 6000
    payload_length: [{min: 10, max: 100}, {min: 200, max: 300}]
    tag: {offset: 0, length: 2}
    routes: {"hex:0a0b": 6001}
    unmatched: pass
limits: {routes: 1024, services: 8, windows: 4}
# expectations follow
#
#
#
expect:
"""
)
EXPECT_LINE = 23

# Every verdict an expectation can name: (packet, verdict, port).
EVERY_VERDICT = [
    ('{protocol: udp, port: 5000, length: 292, tag: "600"}', "rewrite", 5001),
    ('{protocol: tcp, port: 6000, length: 50, tag: "hex:0a0b", ip: 6, vlan: [7]}', "rewrite", 6001),
    ("{protocol: tcp, port: 22, length: 40}", "pass", None),
    ('{protocol: tcp, port: 6000, length: 250, tag: "zz"}', "pass_unmatched", None),
    ('{protocol: udp, port: 5000, length: 289, tag: "600"}', "drop_length", None),
    (
        '{protocol: udp, port: 5000, length: 292, tag: "hex:ffffff", vlan: [1, 2]}',
        "drop_unknown_tag",
        None,
    ),
    ('{protocol: udp, port: 5000, length: 292, tag: "600", truncate: 5}', "drop_malformed", None),
    (
        '{protocol: udp, port: 5000, length: 292, tag: "600", fragment: first}',
        "drop_fragment",
        None,
    ),
    ('{protocol: udp, port: 5000, length: 292, tag: "600", fragment: later}', "pass", None),
    ('{protocol: udp, port: 5000, payload: "hex:00", ip: 6}', "drop_length", None),
]


def item(packet: str, verdict: str, port: int | None = None, name: str = "") -> str:
    """One expectation of exactly 4 lines; its mapping starts on the first."""
    port_line = f"    port: {port}\n" if port is not None else "    # no port\n"
    if name:
        return f"  - name: {name}\n    packet: {packet}\n    verdict: {verdict}\n" + port_line
    return f"  - packet: {packet}\n    verdict: {verdict}\n" + port_line + "    # unnamed\n"


def config(
    items: list[tuple[str, str, int | None]], iface: str = "eth0", names: bool = True
) -> str:
    """HEAD and the items; item i starts on line EXPECT_LINE + 4 * i."""
    body = "".join(
        item(p, v, port, f"case {i}" if names else "") for i, (p, v, port) in enumerate(items)
    )
    return HEAD.replace("IFACE", iface) + body
