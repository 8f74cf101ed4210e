"""How a new TC attachment is made (no root: the tcx probe is replaced by a seam): tcx where
the kernel has it, else clsact; MPLEXCTL_TC_ATTACH overrides; a bad value is a usage error."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from mplexctl.backend import bpfsys, tchook, tcx
from mplexctl.errors import UsageError


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    tchook.tcx_available.cache_clear()
    yield
    tchook.tcx_available.cache_clear()


def _kernel(monkeypatch: pytest.MonkeyPatch, has_tcx: bool) -> list[int]:
    asked: list[int] = []

    def query(ifindex: int, direction: str) -> list[int]:
        asked.append(ifindex)
        if not has_tcx:  # what bpf(BPF_PROG_QUERY) answers for an unknown attach type
            raise bpfsys.BpfError(errno.EINVAL, "tcx ingress query")
        return []

    monkeypatch.setattr(tcx, "query", query)
    return asked


@pytest.mark.parametrize(("has_tcx", "expect"), [(True, "tcx"), (False, "clsact")])
def test_auto_takes_tcx_where_the_kernel_has_it(
    monkeypatch: pytest.MonkeyPatch, has_tcx: bool, expect: str
) -> None:
    monkeypatch.delenv(tchook.ENV, raising=False)
    asked = _kernel(monkeypatch, has_tcx)
    assert tchook.preferred() == expect
    assert tchook.preferred() == expect
    assert asked == [tchook.LO_INDEX]  # probed once per process, on lo
    monkeypatch.setenv(tchook.ENV, "auto")
    assert tchook.preferred() == expect


@pytest.mark.parametrize("choice", ["tcx", "clsact"])
def test_the_setting_overrides(monkeypatch: pytest.MonkeyPatch, choice: str) -> None:
    _kernel(monkeypatch, True)
    monkeypatch.setenv(tchook.ENV, choice)
    assert tchook.preferred() == choice


def test_a_kernel_without_tcx_is_not_queried_for_tcx_programs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = _kernel(monkeypatch, False)
    # qdisc None: no clsact qdisc either, so nothing more is asked of the kernel
    assert tchook.query(7, "ingress", qdisc=None) == []
    assert asked == [tchook.LO_INDEX]


def test_a_bad_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tchook.ENV, "legacy")
    with pytest.raises(UsageError, match=r"MPLEXCTL_TC_ATTACH='legacy': expected one of auto"):
        tchook.preferred()
