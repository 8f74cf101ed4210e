"""Configs the data-plane tests run: YAML text, as an operator would write it.

Together they cover several services, both protocols, multi-window services, 1- and 8-byte
tags, hex: tags, unmatched drop and pass, a UDP and a TCP service on the same port, services
whose file order differs from their (name-sorted) index order, and extreme port numbers.
"""

from __future__ import annotations

from mplexctl.config import parse_config
from mplexctl.config.model import Config

_HEAD = "version: 1\ninterfaces: [{name: eth0, xdp_mode: auto}]\n"

# The example of the docs, plus a TCP service on the same port and a second window.
SAME_PORT = """\
services:
  - name: telemetry
    protocol: udp
    port: 5000
    payload_length: [{min: 290, max: 294}, {min: 600, max: 610}]
    tag: {offset: 20, length: 3}
    routes: {"600": 5001, "hex:ff00a1": 5003, "abc": 65535, "hex:000000": 1}
    unmatched: drop
  - name: control
    protocol: tcp
    port: 5000
    payload_length: [{min: 1, max: 1}, {min: 3, max: 40}, {min: 1400, max: 1460}]
    tag: {offset: 0, length: 1}
    routes: {"a": 6001, "hex:00": 2, "hex:ff": 6003}
    unmatched: pass
"""

# 8-byte tags (text and hex), a tag that fills the whole minimal payload, windows touching.
WIDE_TAGS = """\
services:
  - name: secure
    protocol: tcp
    port: 443
    payload_length: [{min: 16, max: 16}, {min: 17, max: 17}, {min: 100, max: 200}]
    tag: {offset: 8, length: 8}
    routes: {"hex:deadbeefcafef00d": 8443, "TENANT01": 8444, "hex:0000000000000000": 8445}
    unmatched: drop
  - name: bulk
    protocol: udp
    port: 7000
    payload_length: [{min: 8, max: 8}, {min: 64, max: 128}, {min: 1000, max: 1200}]
    tag: {offset: 0, length: 8}
    routes:
      "ABCDEFGH": 7001
      "hex:0001020304050607": 7002
      "hex:ffffffffffffffff": 7003
      "zzzzzzzz": 7004
    unmatched: pass
"""


def _byte_routes(count: int, base: int) -> str:
    return ", ".join(f'"hex:{i:02x}": {base + i}' for i in range(count))


# A 1-byte tag with many routes (half the byte values route), on UDP and TCP port 53.
ONE_BYTE = f"""\
services:
  - name: dns
    protocol: udp
    port: 53
    payload_length: [{{min: 12, max: 512}}]
    tag: {{offset: 2, length: 1}}
    routes: {{{_byte_routes(128, 10000)}}}
    unmatched: drop
  - name: dns-tcp
    protocol: tcp
    port: 53
    payload_length: [{{min: 14, max: 1000}}, {{min: 2000, max: 65535}}]
    tag: {{offset: 13, length: 1}}
    routes: {{{_byte_routes(16, 20000)}}}
    unmatched: pass
"""

# Many services, file order != name order, extreme ports, up to 8 windows, 2..5-byte tags.
MANY = """\
services:
  - name: zulu
    protocol: udp
    port: 65535
    payload_length:
      - {min: 4, max: 4}
      - {min: 10, max: 11}
      - {min: 20, max: 30}
      - {min: 40, max: 40}
      - {min: 50, max: 60}
      - {min: 100, max: 101}
      - {min: 500, max: 520}
      - {min: 1472, max: 1472}
    tag: {offset: 0, length: 4}
    routes: {"ZULU": 40001, "hex:00ff00ff": 40002}
    unmatched: pass
  - name: alpha
    protocol: tcp
    port: 1
    payload_length: [{min: 5, max: 9}, {min: 300, max: 310}]
    tag: {offset: 3, length: 2}
    routes: {"hi": 40003, "hex:ffff": 40004, "hex:0001": 65534}
    unmatched: drop
  - name: mike
    protocol: udp
    port: 8080
    payload_length: [{min: 5, max: 5}, {min: 6, max: 6}, {min: 7, max: 900}]
    tag: {offset: 0, length: 5}
    routes: {"hello": 40005, "hex:0000000001": 40006}
    unmatched: drop
  - name: bravo
    protocol: tcp
    port: 8080
    payload_length: [{min: 32, max: 64}]
    tag: {offset: 31, length: 1}
    routes: {"!": 40007}
    unmatched: pass
  - name: echo
    protocol: udp
    port: 1
    payload_length: [{min: 3, max: 3}, {min: 128, max: 256}]
    tag: {offset: 0, length: 3}
    routes: {"hex:010203": 40008}
    unmatched: drop
"""

CONFIGS: dict[str, str] = {
    "same_port": _HEAD + SAME_PORT,
    "wide_tags": _HEAD + WIDE_TAGS,
    "one_byte": _HEAD + ONE_BYTE,
    "many": _HEAD + "limits: {windows: 10}\n" + MANY,
}


def load(name: str) -> Config:
    return parse_config(CONFIGS[name], f"{name}.yaml")
