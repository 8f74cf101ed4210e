"""History on disk without a kernel: records, pruning, torn records, the pending change, and
the choices rollback and the boot unit make from them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mplexctl.engine import confirm
from mplexctl.engine.history import (
    CONFIRMED,
    KEEP,
    PENDING_STATE,
    REVERTED,
    ROLLED_BACK,
    Checkpoint,
    Journal,
    Origin,
    Pending,
    sha256_of,
)
from mplexctl.engine.rollback import boot_choice, choose
from mplexctl.errors import HostError, UsageError

pytestmark = pytest.mark.unit


def put(j: Journal, text: str, gen: str, state: str = CONFIRMED, **kw: object) -> Checkpoint:
    raw = text.encode()
    return j.record(
        raw,
        generation=gen,
        source="/etc/mplex/config.yaml",
        source_digest="s-" + sha256_of(raw),
        origin=kw.pop("origin", Origin()),  # type: ignore[arg-type]
        result="verified",
        state=state,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(str(tmp_path / "netns" / "blue"))


def test_records_keep_exact_bytes_newest_first(journal: Journal) -> None:
    text = "version: 1\n# \u00e9 comment\r\n"
    a = put(journal, text, "aaaaaaaaaaaa")
    b = put(journal, "b\n", "bbbbbbbbbbbb")
    fresh = Journal(journal.dir)
    assert [c.seq for c in fresh.checkpoints()] == [b.seq, a.seq] == [2, 1]
    assert fresh.body(fresh.get(1)) == text.encode()  # type: ignore[arg-type]
    assert fresh.newest() == b and fresh.problems == []
    assert not [n for n in os.listdir(journal.dir) if ".tmp-" in n]
    assert oct(os.stat(a.path).st_mode & 0o777) == "0o600"


def test_last_twenty_kept(journal: Journal) -> None:
    for i in range(25):
        put(journal, f"config {i}\n", f"{i:012d}")
    seqs = [c.seq for c in Journal(journal.dir).checkpoints()]
    assert seqs == list(range(25, 5, -1)) and len(seqs) == KEEP
    assert len(os.listdir(journal.dir)) == KEEP


def test_pruning_keeps_a_pending_windows_target(journal: Journal) -> None:
    target = put(journal, "A\n", "a" * 12)
    journal.write_pending(Pending("t", (2,), target.seq, target.generation, 1e12, "boot"))
    for i in range(KEEP + 3):
        put(journal, f"B{i}\n", f"{i:012d}")
    assert Journal(journal.dir).get(target.seq) is not None


def test_torn_records_are_reported_never_fatal(journal: Journal) -> None:
    put(journal, "A\n", "a" * 12)
    b = put(journal, "B\n", "b" * 12)
    c = put(journal, "C\n", "c" * 12)
    Path(b.path).write_bytes(b'{"format": 1, "seq": 2, "gener')  # torn header
    with open(c.path, "ab") as fh:
        fh.write(b"tail")  # size no longer matches the header
    fresh = Journal(journal.dir)
    assert [x.seq for x in fresh.checkpoints()] == [1]
    assert len(fresh.problems) == 2
    assert all("unreadable checkpoint" in p for p in fresh.problems)
    assert fresh.newest() is not None and fresh.newest().seq == 1  # type: ignore[union-attr]


def test_corrupt_bytes_are_refused(journal: Journal) -> None:
    a = put(journal, "AAAA\n", "a" * 12)
    data = Path(a.path).read_bytes()
    Path(a.path).write_bytes(data[:-5] + b"BBBB\n")
    with pytest.raises(HostError, match="do not match its digest"):
        Journal(journal.dir).body(a)


def test_state_changes_keep_the_bytes(journal: Journal) -> None:
    a = put(journal, "A\n", "a" * 12, state=PENDING_STATE, deadline=123.0)
    journal.set_state([a.seq], CONFIRMED)
    again = Journal(journal.dir).get(a.seq)
    assert again is not None and again.state == CONFIRMED and again.deadline is None
    assert Journal(journal.dir).body(again) == b"A\n"


def test_pending_round_trip_and_torn(journal: Journal) -> None:
    assert journal.pending() is None
    p = Pending("tok", (3, 4), 2, "g" * 12, 1234.5, "boot-1", 77)
    journal.write_pending(p)
    assert Journal(journal.dir).pending() == p
    Path(journal.pending_path).write_text('{"token": "x", "seqs": [')
    fresh = Journal(journal.dir)
    assert fresh.pending() is None and "unreadable pending change" in fresh.problems[0]
    journal.clear_pending()
    journal.clear_pending()  # twice: no error
    assert not Path(journal.pending_path).exists()


def test_rollback_target_choice(journal: Journal) -> None:
    a = put(journal, "A\n", "a" * 12)
    b = put(journal, "B\n", "b" * 12)
    assert choose(journal, {b.generation}, None) == a
    with pytest.raises(UsageError, match="nothing to roll back to"):
        choose(journal, {a.generation}, None)
    c = put(journal, "C\n", "c" * 12, state=REVERTED)
    d = put(journal, "B2\n", "b" * 12, origin=Origin("revert", "/x", b.seq))
    fresh = Journal(journal.dir)
    # live is B (checkpoint d); C was reverted (never confirmed), B is the live generation
    assert choose(fresh, {d.generation}, None) == a
    assert choose(fresh, {d.generation}, c.generation[:5]) == c  # --to: a prefix will do
    with pytest.raises(UsageError, match="no checkpoint of that generation"):
        choose(fresh, {d.generation}, "ffff")
    assert choose(fresh, set(), None) == d  # nothing live: the newest that was not reverted


def test_live_checkpoint(journal: Journal) -> None:
    a = put(journal, "A\n", "a" * 12)
    put(journal, "B\n", "b" * 12, state=REVERTED)
    assert journal.live_checkpoint({"a" * 12}) == a
    assert journal.live_checkpoint({"b" * 12}) is not None  # reverted, but the only one
    assert journal.live_checkpoint(set()) is None
    assert journal.live_checkpoint({"a" * 12, "b" * 12}) is None


def test_boot_choice(journal: Journal) -> None:
    a = put(journal, "A\n", "a" * 12)
    assert boot_choice(journal, sha256_of(b"A\n")) is True
    assert boot_choice(journal, sha256_of(b"new file\n")) is True  # edited by hand: apply it
    b = put(journal, "B\n", "b" * 12)
    journal.set_state([b.seq], REVERTED)
    assert boot_choice(Journal(journal.dir), sha256_of(b"B\n")) == a
    journal.set_state([a.seq], ROLLED_BACK)
    assert boot_choice(Journal(journal.dir), sha256_of(b"B\n")) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("30s", 30), ("2m", 120), ("1h", 3600), ("1m30s", 90), ("45", 45)],
)
def test_durations(text: str, seconds: float) -> None:
    assert confirm.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["4s", "61m", "2h", "", "soon", "1.5m", "-5s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="confirm-within"):
        confirm.parse_duration(text)


def test_expiry() -> None:
    p = Pending("t", (1,), None, None, 100.0, confirm.host.boot_id())
    assert confirm.expired(p, now=99.0) is None
    assert "ended" in (confirm.expired(p, now=100.0) or "")
    other_boot = Pending("t", (1,), None, None, 1e12, "another-boot")
    assert "rebooted" in (confirm.expired(other_boot) or "")


def test_header_is_one_json_line(journal: Journal) -> None:
    a = put(journal, "x: 1\n", "a" * 12)
    head, _, body = Path(a.path).read_bytes().partition(b"\n")
    doc = json.loads(head)
    assert doc["format"] == 1 and doc["seq"] == 1 and body == b"x: 1\n"
