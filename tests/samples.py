"""Small config texts (and one as data) shared by the pure tests."""

from __future__ import annotations

from typing import Any

BASE = """\
version: 1
interfaces: [{name: eth0}]
services:
  - name: telemetry
    protocol: udp
    port: 5000
    payload_length: [{min: 290, max: 294}]
    tag: {offset: 20, length: 3}
    routes: {"600": 5001, "601": 5002, "602": 5003}
"""
BASE_HEAD = BASE.split("    routes:")[0]  # up to (not including) the routes

# Block style, one service with one route. Line numbers (tests/config/test_invalid.py counts
# on them): 1 version, 2 interfaces, 3 eth0, 4 services, 5 name, 6 protocol, 7 port,
# 8 payload_length, 9 window, 10 tag, 11 routes, 12 "600".
BLOCK = """\
version: 1
interfaces:
  - name: eth0
services:
  - name: telemetry
    protocol: udp
    port: 5000
    payload_length:
      - {min: 290, max: 294}
    tag: {offset: 20, length: 3}
    routes:
      "600": 5001
"""
SERVICE_HEAD = BLOCK.split("    routes:\n")[0]  # up to (not including) the routes


def service_doc(
    port: Any = 5000,
    routes: dict[str, Any] | None = None,
    interface: dict[str, Any] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """A loaded config (plain data) with one interface (eth0 by default) and one service:
    routes {"600": 5001} by default, `more` added to the service's keys."""
    return {
        "version": 1,
        "interfaces": [interface or {"name": "eth0"}],
        "services": [
            {
                "name": "telemetry",
                "protocol": "udp",
                "port": port,
                "payload_length": [{"min": 290, "max": 294}],
                "tag": {"offset": 20, "length": 3},
                "routes": {"600": 5001} if routes is None else routes,
                **more,
            }
        ],
    }
