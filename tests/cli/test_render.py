"""Status renderers (pure): what `status` and `status --prometheus` print from counters."""

from __future__ import annotations

from mplexctl.cli.render import status_prometheus, status_text
from mplexctl.engine.status import Counter, InterfaceStatus, ServiceStatus


def _row(replies: Counter | None) -> InterfaceStatus:
    svc = ServiceStatus(
        name="telemetry",
        protocol="udp",
        port=5000,
        verdicts={"rewrite": Counter(7, 2338)},
        routes={"600": (5001, Counter(7, 2338))},
        replies=replies,
    )
    return InterfaceStatus("veth0", 42, "tc", "mplex", "mplex_tc_in", "abc", 0, (svc,))


def test_status_text_shows_replies_restored_for_a_restoring_service() -> None:
    text = status_text([_row(Counter(5, 1670))])
    assert "    replies restored: 5 packets, 1670 bytes" in text.splitlines()


def test_status_text_has_no_replies_line_without_restore() -> None:
    assert "replies restored" not in status_text([_row(None)])


def test_prometheus_counts_replies_restored_only_for_a_restoring_service() -> None:
    text = status_prometheus([_row(Counter(5, 1670))])
    assert 'mplex_replies_restored_packets_total{interface="veth0",service="telemetry"} 5' in text
    assert 'mplex_replies_restored_bytes_total{interface="veth0",service="telemetry"} 1670' in text
    plain = status_prometheus([_row(None)])
    assert "mplex_replies_restored_packets_total{" not in plain


def test_status_text_says_how_a_tc_program_is_attached() -> None:
    row = _row(None)
    assert "veth0: mplex program id 42, tc mode, generation abc" in status_text([row])
    clsact = InterfaceStatus(**{**row.__dict__, "via": "clsact"})
    assert "veth0: mplex program id 42, tc mode (clsact), generation abc" in status_text([clsact])
    assert "clsact" not in str(clsact.as_dict())  # --json keeps its documented keys
