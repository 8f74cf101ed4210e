"""TC attachment through a clsact qdisc and a direct-action cls_bpf filter: the fallback for
kernels without tcx (before 6.6), or when MPLEXCTL_TC_ATTACH=clsact asks for it.

Reads go through rtnl.py (no pyroute2 import on the probe path); changes through pyroute2.
mplex's filter is found by its program (the probe knows mplex's programs by name) and its
filter name (FILTER_NAME), never by a fixed priority: at attach it takes the lowest free
priority of the hook, so it runs before the filters that tc(8) adds without one (49152,
49151, ...), as XDP runs before TC. Every other filter, and the clsact qdisc itself, is left
as it is; a detach removes only mplex's filter (an empty clsact qdisc stays: it costs nothing
and may be someone else's). A legacy `ingress` qdisc holds clsact's place: it serves the
ingress hook, and is refused for the reply path (it has no egress hook).

A replace is one RTM_NEWTFILTER on the same priority and handle: cls_bpf swaps the program
of that filter in place (list_replace_rcu), so every packet sees the old or the new one.
Unlike tcx's BPF_F_REPLACE the kernel cannot check which program it replaces; the filter is
looked up by the old program's id just before, and a lost race is reported (re-run).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

from mplexctl.backend import rtnl
from mplexctl.backend.host import fault_point
from mplexctl.errors import HostError, KernelError

PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}  # TC_H_MAKE(CLSACT, MIN_IN/EGRESS)
ETH_P_ALL = 0x0003
FILTER_HANDLE = 1
FIRST_PREF = 1
FILTER_NAME = "mplex"  # TCA_BPF_NAME: what tc filter show prints
ATTACH_TRIES = 3  # a free priority taken by someone between our scan and our add: scan again


@dataclass(frozen=True)
class Filter:
    """A cls_bpf filter at a clsact hook: where it is, and the program it runs."""

    pref: int
    handle: int
    prog_id: int
    name: str = ""  # the filter's name: FILTER_NAME for mplex's own


def ingress_qdiscs() -> dict[int, str]:
    """Link index -> "clsact" | "ingress": the qdisc at its ingress handle, where it has one."""
    try:
        return rtnl.ingress_qdiscs()
    except OSError as exc:
        raise HostError(f"cannot list qdiscs: {exc.strerror or exc}") from None


LOOKUP = "lookup"  # query(): the caller does not know the interface's ingress qdisc


def query(ifindex: int, direction: str, qdisc: str | None = LOOKUP) -> list[Filter]:
    """The cls_bpf filters at a clsact hook of an interface, in order ([]: none). qdisc: the
    kind of its ingress qdisc (ingress_qdiscs(); None: it has none), looked up by default."""
    if qdisc == LOOKUP:
        qdisc = ingress_qdiscs().get(ifindex)
    if qdisc is None or (qdisc == "ingress" and direction == "egress"):
        return []  # (a legacy ingress qdisc answers an egress dump with its ingress filters)
    try:
        raw = rtnl.dump_filters(ifindex, PARENTS[direction])
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.EINVAL, errno.ENOENT):
            return []
        raise HostError(f"ifindex {ifindex}: cannot list TC filters: {exc.strerror}") from None
    return [Filter(r.pref, r.handle, r.prog_id, r.name) for r in raw if r.prog_id]


def find(ifindex: int, direction: str, prog_id: int) -> Filter | None:
    """mplex's filter running program prog_id (a filter of someone else that runs the same
    program is never taken for it: mplex's filters carry FILTER_NAME)."""
    return next(
        (f for f in query(ifindex, direction) if f.prog_id == prog_id and f.name == FILTER_NAME),
        None,
    )


def _request(command: str, kind: str, ifindex: int, **kwarg: Any) -> None:
    from pyroute2 import IPRoute  # lazy: importing pyroute2 is slow (rtnl.py)
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        with IPRoute() as ipr:
            ipr.tc(command, kind, ifindex, **kwarg)
    except NetlinkError as exc:
        raise OSError(exc.code, os.strerror(exc.code)) from None


def _explain(exc: OSError, what: str, link: str) -> Exception:
    if exc.errno == errno.ENODEV:
        return HostError(f"{link}: interface disappeared ({what})")
    if exc.errno == errno.EEXIST:
        return KernelError(f"{link}: a TC filter appeared under us ({what}); re-run")
    if exc.errno == errno.ENOENT:
        return KernelError(f"{link}: the TC filter changed under us ({what}); re-run")
    return KernelError(f"{link}: {what} failed: {exc.strerror or exc}")


def check(ifindex: int, link: str, direction: str, have: str | None = LOOKUP) -> None:
    """Refuse a hook this interface cannot give: a legacy `ingress` qdisc holds clsact's
    place and serves ingress filters; it has no egress hook. (Called before an apply
    changes anything, and again at the attach.)"""
    if have == LOOKUP:
        have = ingress_qdiscs().get(ifindex)
    if have == "ingress" and direction == "egress":
        raise HostError(
            f"{link}: has a legacy ingress qdisc, which has no egress hook for the reply path; "
            "replace it with clsact (tc qdisc del dev IFACE ingress; its filters go with it)"
        )


def _ensure_clsact(ifindex: int, link: str, direction: str) -> None:
    """A clsact qdisc on the interface (added when there is none); a legacy `ingress`
    qdisc serves the ingress hook (check())."""
    have = ingress_qdiscs().get(ifindex)
    check(ifindex, link, direction, have)
    if have is not None:  # there already (mplex's or someone else's): used as it is
        return
    try:
        _request("add", "clsact", ifindex)
        fault_point("after-qdisc")  # tests: killed with the qdisc there and no filter yet
    except OSError as exc:
        if exc.errno == errno.EEXIST:  # added meanwhile by someone else
            return
        if exc.errno in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
            raise HostError(
                f"{link}: this kernel has neither tcx hooks nor the clsact qdisc "
                f"(CONFIG_NET_SCH_INGRESS): {exc.strerror}"
            ) from None
        raise _explain(exc, "add clsact qdisc", link) from None


def _filter(command: str, ifindex: int, direction: str, pref: int, **kwarg: Any) -> None:
    _request(
        command,
        "bpf",
        ifindex,
        handle=FILTER_HANDLE,
        parent=PARENTS[direction],
        prio=pref,
        protocol=ETH_P_ALL,
        **kwarg,
    )


def _bpf(prog_fd: int) -> dict[str, Any]:
    return {"fd": prog_fd, "name": FILTER_NAME, "direct_action": True}


def attach(ifindex: int, link: str, prog_fd: int, direction: str) -> None:
    """Add a direct-action filter running prog_fd at the lowest free priority of the hook
    (the clsact qdisc is added first when the interface has none)."""
    _ensure_clsact(ifindex, link, direction)
    for _attempt in range(ATTACH_TRIES):
        used = rtnl.filter_prefs(ifindex, PARENTS[direction])  # any classifier, any chain
        pref = next(p for p in range(FIRST_PREF, FIRST_PREF + len(used) + 1) if p not in used)
        what = f"attach (clsact {direction}, pref {pref})"
        try:
            _filter("add-filter", ifindex, direction, pref, **_bpf(prog_fd))
            return
        except OSError as exc:
            # EEXIST (a bpf filter with our handle) or EINVAL (another classifier): someone
            # took this priority after the scan; scan again.
            taken = exc.errno in (errno.EEXIST, errno.EINVAL)
            if not (taken and pref in rtnl.filter_prefs(ifindex, PARENTS[direction])):
                raise _explain(exc, what, link) from None
    raise KernelError(f"{link}: TC filter priorities kept being taken under us ({what}); re-run")


def replace(ifindex: int, link: str, old_id: int, prog_fd: int, direction: str) -> None:
    """Run prog_fd in the filter that runs program old_id, in place (atomic per packet)."""
    found = find(ifindex, direction, old_id)
    what = f"replace (clsact {direction})"
    if found is None:
        raise KernelError(f"{link}: the attached TC program changed under us ({what}); re-run")
    try:
        _filter("change-filter", ifindex, direction, found.pref, **_bpf(prog_fd))
    except OSError as exc:
        raise _explain(exc, what, link) from None


def detach(ifindex: int, link: str, prog_id: int, direction: str) -> None:
    """Delete the filter that runs program prog_id (never another one)."""
    found = find(ifindex, direction, prog_id)
    if found is None:  # already gone: what detach wants
        return
    what = f"detach (clsact {direction}, pref {found.pref})"
    try:
        _filter("del-filter", ifindex, direction, found.pref)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return
        raise _explain(exc, what, link) from None
