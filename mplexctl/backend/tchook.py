"""mplex's programs at an interface's TC hooks, attached either way the kernel offers:
tcx (tcx.py, kernel 6.6+) or a clsact qdisc with a direct-action cls_bpf filter (clsact.py).

New attachments use tcx where the kernel has it, else clsact; MPLEXCTL_TC_ATTACH=tcx|clsact
overrides that (auto: the default). An attachment found live keeps the way it was made: a
replace or a detach happens where the program is, so a kernel upgrade or a changed setting
never moves a running program (detach, then apply, moves it).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from functools import cache

from mplexctl.backend import bpfsys, clsact, tcx
from mplexctl.errors import UsageError

ENV = "MPLEXCTL_TC_ATTACH"
CHOICES = ("auto", "tcx", "clsact")
LO_INDEX = 1  # every network namespace has lo at index 1: where tcx support is probed


@dataclass(frozen=True)
class Attached:
    """A program at a TC hook, and how it is attached there (tcx | clsact)."""

    prog_id: int
    via: str
    by_mplex: bool = True  # clsact: the filter carries mplex's name (tcx has no names)


@cache
def tcx_available() -> bool:
    """Whether this kernel has tcx hooks (a query of lo's ingress hook is refused without)."""
    try:
        tcx.query(LO_INDEX, "ingress")
    except bpfsys.BpfError as exc:
        if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS):
            return False
        raise
    return True


def preferred() -> str:
    """How a new TC attachment is made here: tcx | clsact."""
    choice = os.environ.get(ENV, "auto") or "auto"
    if choice not in CHOICES:
        raise UsageError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")
    if choice == "auto":
        return "tcx" if tcx_available() else "clsact"
    return choice


def query(ifindex: int, direction: str, qdisc: str | None = clsact.LOOKUP) -> list[Attached]:
    """Every program at one TC hook of an interface: tcx's in order, then cls_bpf filters'.
    qdisc: its ingress qdisc's kind when known (clsact.ingress_qdiscs(); None: none, so no
    filter is looked for)."""
    found = [Attached(i, "tcx") for i in tcx.query(ifindex, direction)] if tcx_available() else []
    found += [
        Attached(f.prog_id, "clsact", f.name == clsact.FILTER_NAME)
        for f in clsact.query(ifindex, direction, qdisc)
    ]
    return found


def check_attach(ifindex: int, link: str, direction: str) -> None:
    """Refuse, before anything changes, a new attachment this interface cannot take the way
    it would be made (clsact beside a legacy ingress qdisc has no egress hook)."""
    if preferred() == "clsact":
        clsact.check(ifindex, link, direction)


def attach(ifindex: int, link: str, via: str, prog_fd: int, direction: str) -> None:
    """Attach prog_fd at the end of the hook, the way `via` says (tcx | clsact)."""
    if via == "tcx":
        tcx.attach(ifindex, link, prog_fd, direction)
    else:
        clsact.attach(ifindex, link, prog_fd, direction)


def replace(ifindex: int, link: str, via: str, old_fd: int, prog_fd: int, direction: str) -> None:
    """Swap exactly old_fd's program for prog_fd's where it is attached, atomically."""
    if via == "tcx":
        tcx.attach(ifindex, link, prog_fd, direction, expected_fd=old_fd)
    else:
        clsact.replace(ifindex, link, bpfsys.prog_info(old_fd).id, prog_fd, direction)


def detach(ifindex: int, link: str, via: str, prog_fd: int, direction: str) -> None:
    """Detach exactly prog_fd's program from the hook (never another one)."""
    if via == "tcx":
        tcx.detach(ifindex, link, prog_fd, direction)
    else:
        clsact.detach(ifindex, link, bpfsys.prog_info(prog_fd).id, direction)
