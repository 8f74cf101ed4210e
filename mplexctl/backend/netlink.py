"""XDP attachment through rtnetlink: query (rtnl.py), attach, atomic replace, detach (pyroute2).

BCC's attach_xdp cannot replace atomically; IFLA_XDP with XDP_FLAGS_REPLACE and
IFLA_XDP_EXPECTED_FD can: the kernel swaps the program only if the old one is still there.
pyroute2 is imported only when something is changed (its import alone is slow).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from mplexctl.backend import rtnl
from mplexctl.errors import HostError, KernelError

XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_REPLACE = 1 << 4
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}
_ATTACHED = {1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass(frozen=True)
class LinkXdp:
    """An interface and the XDP program attached to it (prog_id 0: none)."""

    name: str
    index: int
    prog_id: int
    mode: str | None  # native | generic | offload | multi | None
    up: bool = True  # administratively up (ip link set NAME up)


def list_links() -> list[LinkXdp]:
    try:
        raw = rtnl.dump_links()
    except OSError as exc:
        raise HostError(f"cannot list interfaces: {exc.strerror or exc}") from None
    return [LinkXdp(r.name, r.index, r.prog_id, _ATTACHED.get(r.attached), r.up) for r in raw]


def get_link(name: str) -> LinkXdp | None:
    return next((link for link in list_links() if link.name == name), None)


class _NetlinkFailure(Exception):
    """A refused IFLA_XDP change (errno code, kernel message)."""

    def __init__(self, code: int, text: Any) -> None:
        super().__init__(code, text)
        self.code = code


def _set_xdp(index: int, fd: int, flags: int, expected_fd: int | None) -> None:
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", fd), ("IFLA_XDP_FLAGS", flags)]
    if expected_fd is not None:
        attrs.append(("IFLA_XDP_EXPECTED_FD", expected_fd))
    from pyroute2 import IPRoute  # lazy: see the module docstring
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            ipr.link("set", index=index, xdp={"attrs": attrs})
    except NetlinkError as exc:
        raise _NetlinkFailure(exc.code, exc.args[-1] if exc.args else str(exc)) from None


def _explain(exc: _NetlinkFailure, what: str, link: str) -> Exception:
    code = exc.code
    if code == errno.EOPNOTSUPP:
        return HostError(f"{link}: driver does not support native XDP ({what})")
    if code == errno.ERANGE:
        return HostError(f"{link}: MTU too large for XDP on this driver ({what})")
    if code in (errno.EEXIST, errno.EBUSY, errno.EINVAL) and what.startswith("replace"):
        return KernelError(f"{link}: the attached program changed under us ({what}); re-run")
    if code == errno.EEXIST:
        return KernelError(f"{link}: an XDP program is attached in another mode ({what})")
    if code == errno.EBUSY:
        return KernelError(f"{link}: an XDP program is already attached ({what})")
    if code == errno.ENODEV:
        return HostError(f"{link}: interface disappeared ({what})")
    return KernelError(f"{link}: {what} failed: {exc.args[-1] if exc.args else exc}")


def attach(link: LinkXdp, prog_fd: int, mode: str, expected_fd: int | None = None) -> None:
    """Attach prog_fd in mode; with expected_fd, atomically replace exactly that program."""
    flags = MODE_FLAGS[mode]
    if expected_fd is None:
        flags |= XDP_FLAGS_UPDATE_IF_NOEXIST
    else:
        flags |= XDP_FLAGS_REPLACE
    what = f"{'replace' if expected_fd is not None else 'attach'} in {mode} mode"
    try:
        _set_xdp(link.index, prog_fd, flags, expected_fd)
    except _NetlinkFailure as exc:
        raise _explain(exc, what, link.name) from None


def detach(link: LinkXdp, expected_fd: int | None = None) -> None:
    """Detach the program of link (only if it is still expected_fd's program, when given)."""
    mode = link.mode if link.mode in MODE_FLAGS else "native"
    flags = MODE_FLAGS[mode] | (XDP_FLAGS_REPLACE if expected_fd is not None else 0)
    try:
        _set_xdp(link.index, -1, flags, expected_fd)
    except _NetlinkFailure as exc:
        raise _explain(exc, f"detach ({mode})", link.name) from None
