"""Benchmark configurations: one UDP service on port 5000, 3 .. 65,536 routes."""

from __future__ import annotations

SERVICE_PORT = 5000
BACKENDS = {b"600": 5001, b"601": 5002, b"602": 5003}
UNKNOWN_TAG = b"999"
BAD_LEN = 200  # a payload length outside every window
NON_SERVICE_PORT = 6000


def route_port(i: int) -> int:
    """Target port of generated route i (never the service port)."""
    return 10000 + i % 50000


def config_text(
    iface: str,
    n_routes: int = 3,
    mode: str = "auto",
    shift: int = 0,
    first_port: int | None = None,
) -> str:
    """YAML for one udp service; the first 3 routes are the 600/601/602 backends, the rest
    are hex tags 0x01xxxx. `shift` re-targets every generated route (a full-table change);
    `first_port` re-targets route "600" only (a one-route change)."""
    lines = [
        "version: 1",
        "interfaces:",
        f"  - name: {iface}",
        f"    xdp_mode: {mode}",
        "services:",
        "  - name: bench",
        "    protocol: udp",
        f"    port: {SERVICE_PORT}",
        "    payload_length:",
        "      - {min: 290, max: 294}",
        "    tag: {offset: 20, length: 3}",
        "    routes:",
    ]
    for i, (tag, port) in enumerate(BACKENDS.items()):
        if i >= n_routes:
            break
        if i == 0 and first_port is not None:
            port = first_port
        lines.append(f'      "{tag.decode()}": {port}')
    for i in range(max(0, n_routes - len(BACKENDS))):
        lines.append(f'      "hex:{0x010000 + i:06x}": {route_port(i + shift)}')
    lines += ["    unmatched: drop", "limits:", "  routes: 65536", ""]
    return "\n".join(lines)
