"""`interfaces[].hook`, `services[].reply` and `limits.flows` (issue 14): keys, defaults,
semantic checks with lines, and what they change in the build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mplexctl import constants as C
from mplexctl.compiler.build import compile_config
from mplexctl.config import parse_config
from mplexctl.config.model import Interface, Limits
from mplexctl.contract.model import run_model
from mplexctl.errors import ConfigError
from tests.samples import BLOCK
from tests.support.frames import tcp_frame

pytestmark = pytest.mark.unit

TWO = BLOCK + (
    "  - name: control\n    protocol: udp\n    port: 5100\n"
    "    payload_length: [{min: 1, max: 100}]\n    tag: {offset: 0, length: 1}\n"
    '    routes: {"a": 6001}\n'
)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    return info.value.problems


def test_defaults() -> None:
    config = parse_config(BLOCK)
    assert config.interfaces == (Interface("eth0", "auto", "xdp"),)
    assert config.services[0].reply == "none"
    assert config.limits == Limits(flows=C.DEFAULT_FLOWS)
    assert not config.restores and config.hooks == {"xdp"}


def test_keys_of_the_contract() -> None:
    text = BLOCK.replace("  - name: eth0\n", "  - {name: eth0, hook: tc}\n")
    text = text.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    config = parse_config(text + "limits:\n  flows: 1024\n")
    assert config.interfaces == (Interface("eth0", "auto", "tc"),)
    assert config.services[0].reply == "restore"
    assert config.limits.flows == 1024
    build = compile_config(config)
    assert build.programs == (C.PROG_NAME, C.PROG_TC_IN, C.PROG_TC_OUT)
    defines = dict(build.defines)
    assert defines["MPLEX_HAVE_TC_INGRESS"] == "1"
    assert defines["MPLEX_HAVE_RESTORE"] == "1"
    assert defines["MPLEX_FLOWS_MAP_SIZE"] == "1024"
    assert build.services[0].flags & C.SVC_F_RESTORE


def test_xdp_mode_with_hook_tc_is_refused() -> None:
    text = BLOCK.replace("  - name: eth0\n", "  - name: eth0\n    hook: tc\n    xdp_mode: native\n")
    (problem,) = problems(text)
    assert problem.startswith("f.yaml:5: interfaces[0].xdp_mode: ")
    assert "xdp_mode applies to hook xdp only" in problem


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [("hook", "ebpf", "hook"), ("reply", "yes", "reply"), ("flows", "0", "flows")],
)
def test_bad_values(key: str, value: str, needle: str) -> None:
    if key == "hook":
        text = BLOCK.replace("  - name: eth0\n", f"  - {{name: eth0, hook: {value}}}\n")
    elif key == "reply":
        text = BLOCK.replace("    port: 5000\n", f"    port: 5000\n    reply: {value}\n")
    else:
        text = BLOCK + f"limits: {{flows: {value}}}\n"
    found = problems(text)
    assert len(found) == 1 and needle in found[0], found


def test_restore_needs_an_interface() -> None:
    text = BLOCK.replace("interfaces:\n  - name: eth0\n", "interfaces: []\n")
    text = text.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    (problem,) = problems(text)
    assert problem.startswith("f.yaml:7: services[0].reply: ")
    assert "needs an interface in the file" in problem


def test_restore_on_a_tcp_service_is_refused() -> None:
    """A tcp service drops the handshake (no payload: outside every window), so no TCP
    connection is set up and no reply exists to restore: refused at the reply key, naming
    the service, the port and why."""
    text = BLOCK.replace("    protocol: udp\n", "    protocol: tcp\n")
    text = text.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    (problem,) = problems(text)
    assert problem.startswith("f.yaml:8: services[0].reply: service telemetry: "), problem
    assert "reply: restore works for udp services only" in problem
    assert "no TCP connection to port 5000 is ever set up" in problem
    # The same tcp service without restore stays valid (with its warning); a udp service
    # of the same file may still restore.
    assert parse_config(text.replace("    reply: restore\n", "")).services[0].protocol == "tcp"
    mixed = TWO.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    mixed = mixed.replace(
        "    protocol: udp\n    port: 5100\n", "    protocol: tcp\n    port: 5100\n"
    )
    assert [s.reply for s in parse_config(mixed).services] == ["restore", "none"]
    (problem,) = problems(mixed.replace("    port: 5100\n", "    port: 5100\n    reply: restore\n"))
    assert problem.startswith("f.yaml:17: services[1].reply: service control: "), problem


@pytest.mark.parametrize("version", [4, 6])
def test_the_model_drops_a_segment_without_payload_of_a_tcp_service(version: int) -> None:
    """The reason for the refusal, in the reference model: a handshake segment (no payload)
    of a tcp service is dropped by the length check, whatever `unmatched` says."""
    text = BLOCK.replace("    protocol: udp\n", "    protocol: tcp\n") + "    unmatched: pass\n"
    result = run_model(parse_config(text), tcp_frame(b"", 5000, version))
    assert (result.service, result.action, result.verdict) == ("telemetry", "drop", "drop_length")


def test_restore_on_tcp_is_refused_by_the_cli_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "tcp.yaml"
    text = BLOCK.replace("    protocol: udp\n", "    protocol: tcp\n")
    path.write_text(text.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n"))
    r = subprocess.run(
        [sys.executable, "-m", "mplexctl", "validate", str(path)], capture_output=True, text=True
    )
    assert r.returncode == 2, r.stderr
    assert f"{path}:8: services[0].reply: service telemetry: reply: restore works for udp" in (
        r.stderr
    )
    assert "Traceback" not in r.stderr


def test_route_port_may_not_be_another_restoring_service_port() -> None:
    """The issue's rule is covered by a wider one: no route leads to any service port."""
    text = BLOCK.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    text += (
        "  - name: control\n    protocol: udp\n    port: 5001\n    reply: restore\n"
        "    payload_length: [{min: 1, max: 100}]\n    tag: {offset: 0, length: 1}\n"
        '    routes: {"a": 6001}\n'
    )
    (problem,) = problems(text)
    assert problem.startswith('f.yaml:13: services[0].routes."600": ')
    assert "targets the port of service control" in problem


def test_reply_is_part_of_the_row_not_the_program() -> None:
    """Turning reply on changes the program (the restore code is compiled in); toggling it
    between services of a program that has it is a service row update."""
    one = TWO.replace("    port: 5000\n", "    port: 5000\n    reply: restore\n")
    other = TWO.replace("    port: 5100\n", "    port: 5100\n    reply: restore\n")
    a, b = compile_config(parse_config(one)), compile_config(parse_config(other))
    assert a.program_digest == b.program_digest
    assert a.digest != b.digest
    plain = compile_config(parse_config(TWO))
    assert plain.program_digest != a.program_digest
