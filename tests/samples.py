"""Small config texts shared by the pure tests."""

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
