"""The reply path's egress program through BPF_PROG_TEST_RUN (no traffic): a reply of a flow
the ingress program recorded leaves with the service port as its source port and a valid
checksum; a reply to anyone else, a TCP segment and a non-reply pass untouched (issue 14)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mplexctl import constants as C
from mplexctl.backend.bpfsys import prog_test_run
from mplexctl.backend.loader import Loaded, compile_and_load
from mplexctl.backend.program import ProgramMaps
from mplexctl.compiler.build import compile_config
from mplexctl.config import parse_config
from tests.samples import BASE
from tests.support.frames import (
    DST4,
    DST6,
    SPORT,
    SRC4,
    SRC6,
    l4_checksum_ok,
    payload,
    ports,
    tcp_frame,
    udp_frame,
)

pytestmark = [pytest.mark.kernel, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

# The shared sample (routes "600" -> 5001, "601" -> 5002), at hook tc, restoring replies.
CONFIG = BASE.replace("{name: eth0}", "{name: mpxreply0, hook: tc}") + "    reply: restore\n"
PASS = C.TC_ACT_UNSPEC & 0xFFFFFFFF
THIRD4, THIRD6 = "192.0.2.9", "2001:db8::9"


@dataclass
class Prog:
    loaded: Loaded
    maps: ProgramMaps

    def run(self, entry: str, frame: bytes) -> bytes:
        res = prog_test_run(self.loaded.fds[entry], frame)
        assert res.retval == PASS, f"{entry}: retval {res.retval}"
        return bytes(res.data)


@pytest.fixture(scope="module")
def prog() -> Iterator[Prog]:
    if os.geteuid() != 0:
        pytest.fail("needs root (BPF_PROG_LOAD / BPF_PROG_TEST_RUN)")
    build = compile_config(parse_config(CONFIG, "reply.yaml"))
    loaded = compile_and_load(build)
    maps = ProgramMaps.from_fd(loaded.prog_fd, loaded.maps)
    try:
        maps.fill(build)
        assert {C.PROG_TC_IN, C.PROG_TC_OUT} <= set(loaded.fds)
        yield Prog(loaded, maps)
    finally:
        loaded.close()


def _request(version: int, client: str, server: str, tag: bytes) -> bytes:
    return udp_frame(payload(tag), 5000, version, src=client, dst=server)


def _reply(version: int, server: str, client: str, sport: int, dport: int = SPORT) -> bytes:
    return udp_frame(b"echo" * 10, dport, version, sport=sport, src=server, dst=client)


@pytest.mark.parametrize(
    ("version", "client", "server", "third"),
    [(4, SRC4, DST4, THIRD4), (6, SRC6, DST6, THIRD6)],
    ids=["ipv4", "ipv6"],
)
def test_a_recorded_flow_gets_its_service_port_back(
    prog: Prog, version: int, client: str, server: str, third: str
) -> None:
    # Before any request, a reply from the backend port leaves as it is.
    before = _reply(version, server, client, 5002)
    assert prog.run(C.PROG_TC_OUT, before) == before
    # The request is rewritten to the route's port (and its flow recorded)...
    sent = prog.run(C.PROG_TC_IN, _request(version, client, server, b"601"))
    assert ports(sent) == (SPORT, 5002) and l4_checksum_ok(sent)
    # ...so the backend's reply to that client leaves from the service port, checksum valid.
    out = prog.run(C.PROG_TC_OUT, _reply(version, server, client, 5002))
    assert ports(out) == (5000, SPORT) and l4_checksum_ok(out)
    # The same backend port towards another client, or another client port: untouched.
    for other in (
        _reply(version, server, third, 5002),
        _reply(version, server, client, 5002, dport=SPORT + 1),
        _reply(version, server, client, 5001),  # another backend port than the flow's
    ):
        assert prog.run(C.PROG_TC_OUT, other) == other
    # A TCP segment of the same addresses and ports is no UDP reply: untouched.
    seg = tcp_frame(b"x" * 20, SPORT, version, sport=5002, src=server, dst=client)
    assert prog.run(C.PROG_TC_OUT, seg) == seg


def test_an_ipv4_reply_without_checksum_keeps_it_zero(prog: Prog) -> None:
    prog.run(C.PROG_TC_IN, _request(4, SRC4, DST4, b"600"))
    bare = udp_frame(b"echo", SPORT, 4, sport=5001, src=DST4, dst=SRC4, zero_csum=True)
    out = prog.run(C.PROG_TC_OUT, bare)
    assert ports(out) == (5000, SPORT)
    assert out[40:42] == b"\0\0"  # UDP checksum field (14 + 20 + 6): still "none"
