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

# Block style, up to (not including) the routes of the one service.
SERVICE_HEAD = """\
version: 1
interfaces:
  - name: eth0
services:
  - name: telemetry
    protocol: udp
    port: 5000
    payload_length: [{min: 290, max: 294}]
    tag: {offset: 20, length: 3}
"""


def service_doc(port: Any = 5000, routes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A loaded config (plain data) with one service; routes {"600": 5001} by default."""
    return {
        "version": 1,
        "interfaces": [{"name": "eth0"}],
        "services": [
            {
                "name": "telemetry",
                "protocol": "udp",
                "port": port,
                "payload_length": [{"min": 290, "max": 294}],
                "tag": {"offset": 20, "length": 3},
                "routes": {"600": 5001} if routes is None else routes,
            }
        ],
    }
