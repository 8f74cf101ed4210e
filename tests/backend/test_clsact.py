"""The clsact + cls_bpf attachment (the TC fallback for kernels without tcx) against the
kernel: the filter reader agrees with tc(8), a filter takes the lowest free priority, a replace
keeps its place, and only mplex's filter is ever changed or removed."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from mplexctl.backend import clsact, rtnl
from mplexctl.errors import HostError, KernelError
from tests.support.lab import Lab

pytestmark = pytest.mark.kernel

PROGS = (
    "int tc_a(struct __sk_buff *skb) { return -1; }\nint tc_b(struct __sk_buff *skb) { return -1; }"
)


@pytest.fixture
def progs(lab: Lab) -> Iterator[tuple[int, int, int]]:
    """(ifindex of the appliance end, fd of program a, fd of program b), inside lab.dst."""
    from bcc import BPF

    with lab.in_netns(lab.dst):
        bpf = BPF(text=PROGS.encode())
        try:
            a = bpf.load_func(b"tc_a", BPF.SCHED_CLS).fd
            b = bpf.load_func(b"tc_b", BPF.SCHED_CLS).fd
            yield socket.if_nametoindex(lab.dst_if), a, b
        finally:
            bpf.cleanup()


def _tc_view(dev: str, direction: str) -> list[tuple[int, int, bool]]:
    """(pref, program id, direct-action) of each bpf filter, as tc -j filter show reads them."""
    out = subprocess.run(
        ["tc", "-j", "filter", "show", "dev", dev, direction],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    doc: list[dict[str, Any]] = json.loads(out or "[]")
    return [
        (f["pref"], f["options"]["prog"]["id"], bool(f["options"].get("direct-action")))
        for f in doc
        if f.get("kind") == "bpf" and "options" in f
    ]


def _ours(index: int, direction: str) -> list[tuple[int, int, bool]]:
    return [
        (r.pref, r.prog_id, r.direct_action)
        for r in rtnl.dump_filters(index, clsact.PARENTS[direction])
    ]


def _u32_filter(dev: str, pref: str) -> None:
    """Someone else's u32 filter (not bpf) at a priority of the ingress hook."""
    match = ("u32", "match", "u32", "0", "0")
    tc = ("tc", "filter", "add", "dev", dev, "ingress", "pref", pref, "protocol", "all")
    subprocess.run([*tc, *match], check=True)


def _prog_id(fd: int) -> int:
    from mplexctl.backend import bpfsys

    return bpfsys.prog_info(fd).id


def test_filter_reader_agrees_with_tc(lab: Lab, progs: tuple[int, int, int]) -> None:
    index, a, b = progs
    with lab.in_netns(lab.dst):
        assert index not in rtnl.ingress_qdiscs() and clsact.query(index, "ingress") == []
        clsact.attach(index, lab.dst_if, a, "ingress")
        clsact.attach(index, lab.dst_if, b, "ingress")
        clsact.attach(index, lab.dst_if, b, "egress")
        assert rtnl.ingress_qdiscs()[index] == "clsact"
        for direction in ("ingress", "egress"):
            assert _ours(index, direction) == _tc_view(lab.dst_if, direction)
        assert _ours(index, "ingress") == [(1, _prog_id(a), True), (2, _prog_id(b), True)]


def test_lowest_free_pref_replace_in_place_detach_only_ours(
    lab: Lab, progs: tuple[int, int, int]
) -> None:
    index, a, b = progs
    dev = lab.dst_if
    with lab.in_netns(lab.dst):
        # Someone else's filter holds priority 1 (attached with tc's own tool chain).
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.tc("add", "clsact", index)
            ipr.tc(
                "add-filter",
                "bpf",
                index,
                7,
                fd=a,
                name="theirs",
                prio=1,
                parent=clsact.PARENTS["ingress"],
                direct_action=True,
            )
        theirs = clsact.query(index, "ingress")
        assert [(f.pref, f.handle, f.name) for f in theirs] == [(1, 7, "theirs")]
        clsact.attach(index, dev, b, "ingress")  # ours: next free priority, runs after it
        mine = clsact.find(index, "ingress", _prog_id(b))
        assert mine is not None and mine.pref == 2
        clsact.replace(index, dev, _prog_id(b), a, "ingress")  # same place, new program
        assert clsact.query(index, "ingress") == [
            theirs[0],
            clsact.Filter(2, 1, _prog_id(a), clsact.FILTER_NAME),
        ]
        # A replace whose program is no longer there is refused (someone changed it).
        with pytest.raises(KernelError, match="changed under us"):
            clsact.replace(index, dev, _prog_id(b), a, "ingress")
        # Both filters run program a now: detach goes by mplex's filter name, never theirs.
        clsact.detach(index, dev, _prog_id(a), "ingress")
        assert clsact.query(index, "ingress") == theirs
        clsact.detach(index, dev, _prog_id(a), "ingress")  # gone already: nothing to do
        assert clsact.query(index, "ingress") == theirs and index in rtnl.ingress_qdiscs()


def test_a_legacy_ingress_qdisc_serves_ingress_and_is_refused_for_egress(
    lab: Lab, progs: tuple[int, int, int]
) -> None:
    index, a, _b = progs
    with lab.in_netns(lab.dst):
        subprocess.run(["tc", "qdisc", "add", "dev", lab.dst_if, "ingress"], check=True)
        assert rtnl.ingress_qdiscs()[index] == "ingress"
        clsact.attach(index, lab.dst_if, a, "ingress")
        assert [f.prog_id for f in clsact.query(index, "ingress")] == [_prog_id(a)]
        with pytest.raises(HostError, match="legacy ingress qdisc, which has no egress hook"):
            clsact.attach(index, lab.dst_if, a, "egress")
        assert clsact.query(index, "egress") == []  # nothing was attached anywhere else
        assert [f.prog_id for f in clsact.query(index, "ingress")] == [_prog_id(a)]
        assert rtnl.ingress_qdiscs()[index] == "ingress"


def test_a_priority_held_by_another_classifier_is_not_taken(
    lab: Lab, progs: tuple[int, int, int]
) -> None:
    """Priorities held by classifiers other than bpf (u32 here; flower, matchall, ... the
    same) are in use too: a bpf filter at such a priority is refused by the kernel (EINVAL),
    so mplex's filter takes the next priority free of every classifier."""
    index, a, _b = progs
    dev = lab.dst_if
    with lab.in_netns(lab.dst):
        subprocess.run(["tc", "qdisc", "add", "dev", dev, "clsact"], check=True)
        for pref in ("1", "2"):
            _u32_filter(dev, pref)
        clsact.attach(index, dev, a, "ingress")
        assert [(f.pref, f.name) for f in clsact.query(index, "ingress")] == [(3, "mplex")]
        kinds = subprocess.run(
            ["tc", "-j", "filter", "show", "dev", dev, "ingress"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert {(f["pref"], f["kind"]) for f in json.loads(kinds)} == {
            (1, "u32"),
            (2, "u32"),
            (3, "bpf"),
        }


def test_a_priority_taken_between_scan_and_add_is_skipped(
    lab: Lab, progs: tuple[int, int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone adds a filter at the priority mplex chose, after its scan and before its add
    (simulated: the first scan is stale): the add is refused, mplex scans again and takes
    the next free one; the error, when there is one, is in words, not an errno tuple."""
    index, a, _b = progs
    dev = lab.dst_if
    real = rtnl.filter_prefs
    scans: list[int] = []

    def stale_first(ifindex: int, parent: int) -> set[int]:
        scans.append(ifindex)
        return set() if len(scans) == 1 else real(ifindex, parent)

    monkeypatch.setattr(rtnl, "filter_prefs", stale_first)
    with lab.in_netns(lab.dst):
        subprocess.run(["tc", "qdisc", "add", "dev", dev, "clsact"], check=True)
        _u32_filter(dev, "1")
        clsact.attach(index, dev, a, "ingress")
        assert [(f.pref, f.name) for f in clsact.query(index, "ingress")] == [(2, "mplex")]
        assert len(scans) == 3  # the stale scan, the check after the refusal, a new scan
        with pytest.raises(OSError) as err:  # a filter with handle 1 there already
            clsact._filter("add-filter", index, "ingress", 2, **clsact._bpf(a))
        assert err.value.strerror == "File exists"


def test_mplex_program_in_someone_elses_filter_is_theirs(lab: Lab) -> None:
    """The probe takes a cls_bpf filter for mplex's only when mplexctl made it (its name):
    mplex's program in another filter is foreign (mplexctl could not replace or remove it)."""
    from bcc import BPF
    from pyroute2 import IPRoute

    from mplexctl import constants as C
    from mplexctl.engine.probe import tc_hooks

    with lab.in_netns(lab.dst):
        bpf = BPF(text=f"int {C.PROG_TC_IN}(struct __sk_buff *skb) {{ return -1; }}".encode())
        try:
            fd = bpf.load_func(C.PROG_TC_IN.encode(), BPF.SCHED_CLS).fd
            index = socket.if_nametoindex(lab.dst_if)
            with IPRoute() as ipr:
                ipr.tc("add", "clsact", index)
                ipr.tc("add-filter", "bpf", index, 1, fd=fd, name="copied", prio=5,
                       parent=clsact.PARENTS["ingress"], direct_action=True)  # fmt: skip
            assert [f.prog_id for f in clsact.query(index, "ingress")] == [_prog_id(fd)]
            assert tc_hooks(index).ingress == 0
            clsact.attach(index, lab.dst_if, fd, "ingress")
            hooks = tc_hooks(index)
            assert hooks.ingress == _prog_id(fd) and hooks.ingress_via == "clsact"
            clsact.detach(index, lab.dst_if, _prog_id(fd), "ingress")
            assert [f.name for f in clsact.query(index, "ingress")] == ["copied"]
        finally:
            bpf.cleanup()
