"""The probe's own rtnetlink link dump agrees with pyroute2 on every link and XDP attachment."""

from __future__ import annotations

from typing import Any

import pytest
from pyroute2 import IPRoute

from mplexctl.backend import netlink, rtnl
from tests.support.lab import Lab

pytestmark = pytest.mark.kernel

TRIVIAL = "int trivial_xdp(struct xdp_md *ctx) { return XDP_PASS; }"


def _pyroute2_view() -> dict[str, tuple[int, int, int]]:
    """name -> (index, IFLA_XDP_ATTACHED, program id as the probe must report it)."""
    names = {"xdp": 1, "xdpgeneric": 2, "xdpoffload": 3, "xdpmulti": 4}
    out = {}
    with IPRoute() as ipr:
        for msg in ipr.get_links():
            xdp: Any = msg.get_attr("IFLA_XDP")
            attached = prog = 0
            if xdp:
                attached = xdp.get_attr("IFLA_XDP_ATTACHED") or 0
                attached = names.get(attached, 0) if isinstance(attached, str) else attached
                prog = xdp.get_attr("IFLA_XDP_PROG_ID") or 0
                if attached == 4:
                    prog = xdp.get_attr("IFLA_XDP_DRV_PROG_ID")
            out[msg.get_attr("IFLA_IFNAME")] = (msg["index"], attached, prog)
    return out


def _rtnl_view() -> dict[str, tuple[int, int, int]]:
    return {r.name: (r.index, r.attached, r.prog_id) for r in rtnl.dump_links()}


def _set(index: int, fd: int, flags: int) -> None:
    with IPRoute() as ipr:
        ipr.link(
            "set", index=index, xdp={"attrs": [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]}
        )


def test_rtnl_dump_matches_pyroute2(lab: Lab) -> None:
    from bcc import BPF

    native, generic = netlink.MODE_FLAGS["native"], netlink.MODE_FLAGS["generic"]
    with lab.in_netns(lab.dst):
        bpf = BPF(text=TRIVIAL.encode())
        try:
            fd = bpf.load_func(b"trivial_xdp", BPF.XDP).fd
            dst = netlink.get_link(lab.dst_if)
            lo = netlink.get_link("lo")
            assert dst is not None and lo is not None
            seen_modes = []
            steps = [
                (dst.index, fd, native),  # driver mode
                (lo.index, fd, generic),  # generic mode on another link
            ]
            assert _rtnl_view() == _pyroute2_view()
            for index, prog_fd, flags in steps:
                _set(index, prog_fd, flags)
                assert _rtnl_view() == _pyroute2_view()
                seen_modes.append({link.name: link.mode for link in netlink.list_links()})
            assert seen_modes[0][lab.dst_if] == "native"
            assert seen_modes[1]["lo"] == "generic"
            prog_ids = {link.prog_id for link in netlink.list_links() if link.prog_id}
            assert len(prog_ids) == 1 and prog_ids != {0}
            for index, _fd, flags in reversed(steps):
                _set(index, -1, flags)
            assert all(link.prog_id == 0 for link in netlink.list_links())
            assert _rtnl_view() == _pyroute2_view()
        finally:
            bpf.cleanup()
