"""`interfaces[].hook`, `services[].reply` and `limits.flows` (issue 14): keys, defaults,
semantic checks with lines, and what they change in the build."""

from __future__ import annotations

import pytest

from mplexctl import constants as C
from mplexctl.compiler.build import compile_config
from mplexctl.config import parse_config
from mplexctl.config.model import Interface, Limits
from mplexctl.errors import ConfigError
from tests.samples import BLOCK

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
