"""History, rollback and confirm-or-revert against the real kernel, each host a fresh netns.

History goes to this run's scratch state directory (tests/conftest.py sets
MPLEXCTL_STATE_DIR), keyed by the namespace's name as in production. Every watchdog a test
started is killed in teardown (found by this run's state directory and the test's netns)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.cli.jsondoc import check
from tests.support.hosts import ROOT, Host, route_of
from tests.support.hosts import host as new_host

pytestmark = pytest.mark.kernel

MORE = (
    "  - name: other\n    protocol: tcp\n    port: 6000\n"
    "    payload_length: [{min: 10, max: 20}]\n    tag: {offset: 0, length: 1}\n"
    '    routes: {"a": 6001}\n'
)
PENDING_LINE = re.compile(
    r"^applied generation ([0-9a-f]{12}); reverts to ([0-9a-f]{12}) at "
    r"(\d\d:\d\d:\d\d) UTC unless confirmed \(mplexctl confirm\)$",
    re.M,
)


def state_dir(host: Host) -> Path:
    return Path(os.environ["MPLEXCTL_STATE_DIR"]) / "netns" / host.ns


def pending(host: Host) -> dict[str, Any] | None:
    path = state_dir(host) / "pending.json"
    return json.loads(path.read_text()) if path.exists() else None


def history(host: Host) -> list[dict[str, Any]]:
    r = host.cli("history", "--json")
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, Any]] = check(r.stdout, "history", 0)["checkpoints"]
    return rows


def states(host: Host) -> list[tuple[str, str]]:
    """(generation, state) per checkpoint, newest first."""
    return [(c["generation"], c["state"]) for c in history(host)]


def live_prog(host: Host) -> int:
    """The XDP program id on host.xdp, read with ip(8): no mplexctl verb (each one settles)."""
    out = subprocess.run(
        ["ip", "-j", "-n", host.ns, "link", "show", host.xdp],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int((json.loads(out)[0].get("xdp") or {}).get("prog", {}).get("id", 0))


def diff_rc(host: Host, cfg: Path) -> int:
    return host.cli("diff", str(cfg)).returncode


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and _stat(pid)[2] != "Z"


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return [text[: text.index(" (")], "comm", *text[text.rindex(")") + 2 :].split()]


def wait_for(cond: Any, timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def _watchdogs(ns: str) -> list[int]:
    """Watchdogs of this test run's state directory in namespace ns."""
    mine = str(Path(os.environ["MPLEXCTL_STATE_DIR"]) / "netns" / ns)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"mplexctl.engine.confirm" in argv and mine.encode() in argv:
                found.append(int(entry))
    return found


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Any]:
    """Makes more hosts on demand (as the `host` fixture); kills their watchdogs."""
    with ExitStack() as stack:
        made: list[Host] = []

        def make() -> Host:
            sub = tmp_path / f"h{len(made)}"
            sub.mkdir()
            made.append(stack.enter_context(new_host(sub)))
            return made[-1]

        try:
            yield make
        finally:
            for h in made:
                for pid in _watchdogs(h.ns):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def reap(host: Host) -> Iterator[Host]:
    yield host
    for pid in _watchdogs(host.ns):
        os.kill(pid, signal.SIGKILL)


def test_history_and_rollback_of_a_map_only_change(reap: Host) -> None:
    host = reap
    a = host.config({"600": 5001, "601": 5002})
    b = host.config({"600": 5009, "601": 5002})
    gen_a = host.apply(a)["generation"]
    prog = host.status()["prog_id"]
    gen_b = host.apply(b)["generation"]
    rows = history(host)
    assert [(r["seq"], r["generation"], r["state"], r["live"]) for r in rows] == [
        (2, gen_b, "confirmed", True),
        (1, gen_a, "confirmed", False),
    ]
    assert rows[0]["source"] == str(b) and rows[1]["source"] == str(a)
    # `ip netns exec NAME` finds the same history as `--netns NAME`
    r = subprocess.run(
        ["ip", "netns", "exec", host.ns, sys.executable, "-m", "mplexctl", "history", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0 and json.loads(r.stdout)["checkpoints"] == rows, r.stderr
    text = host.cli("history").stdout.splitlines()
    assert text[1].startswith("*") and gen_b in text[1] and "confirmed" in text[1]

    planned = host.cli("rollback", "--check", "--json")
    assert planned.returncode == 0 and check(planned.stdout, "rollback", 0)["check"] is True
    assert route_of(prog, b"600") == 5009 and diff_rc(host, b) == 0

    r = host.cli("rollback")
    assert r.returncode == 0, r.stderr
    assert f"rolled back to generation {gen_a} (checkpoint 1" in r.stdout
    assert diff_rc(host, a) == 0
    assert host.status()["prog_id"] == prog and route_of(prog, b"600") == 5001  # in place
    rows = history(host)
    assert [(r["generation"], r["state"], r["kind"], r["of_seq"], r["live"]) for r in rows] == [
        (gen_a, "confirmed", "rollback", 1, True),
        (gen_b, "rolled back", "apply", None, False),
        (gen_a, "confirmed", "apply", None, False),
    ]
    assert rows[0]["source"] == str(a)

    # --to a generation (a prefix will do); then one that history does not know: exit 2
    r = host.cli("rollback", "--to", gen_b[:6], "--json")
    assert r.returncode == 0 and check(r.stdout, "rollback", 0)["rolled_back_to"] == {
        "seq": 2,
        "generation": gen_b,
    }
    assert diff_rc(host, b) == 0
    r = host.cli("rollback", "--to", "0000ffff")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_nothing_to_roll_back_to_exits_2(reap: Host) -> None:
    host = reap
    r = host.cli("rollback")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "nothing to roll back to" in r.stderr
    host.apply(host.config())
    r = host.cli("rollback", "--json")
    assert r.returncode == 2 and "nothing to roll back to" in r.stderr
    assert check(r.stdout, "failure", 2)["failed"] is True


def test_rollback_of_a_program_swap(reap: Host) -> None:
    host = reap
    a = host.config({"600": 5001})
    b = host.config({"600": 5001}, more_services=MORE)
    host.apply(a)
    prog_a = host.status()["prog_id"]
    swap = host.apply(b)
    assert swap["plan"][0]["action"] == "swap"
    prog_b = host.status()["prog_id"]
    assert prog_b != prog_a and set(host.status()["services"]) == {"telemetry", "other"}
    r = host.cli("rollback", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["plan"][0]["action"] == "swap" and doc["compiles"] == 1
    assert diff_rc(host, a) == 0
    st = host.status()
    assert st["prog_id"] not in (prog_a, prog_b) and set(st["services"]) == {"telemetry"}
    assert route_of(st["prog_id"], b"600") == 5001
    assert [r["state"] for r in history(host)] == ["confirmed", "rolled back", "confirmed"]


def test_twenty_five_applies_keep_twenty(reap: Host, tmp_path: Path) -> None:
    """25 route changes in one process (the engine's apply, as the CLI calls it)."""
    host = reap
    files = [host.config({"600": 5001 + i}) for i in range(25)]
    code = (
        "import sys\n"
        "from mplexctl.backend.host import enter_netns\n"
        "from mplexctl.engine.apply import apply\n"
        "enter_netns(sys.argv[1])\n"
        "for path in sys.argv[2:]:\n"
        "    assert apply(path).changed\n"
    )
    subprocess.run([sys.executable, "-c", code, host.ns, *map(str, files)], check=True, cwd=ROOT)
    rows = history(host)
    assert [r["seq"] for r in rows] == list(range(25, 5, -1))
    assert rows[0]["live"] and rows[0]["source"] == str(files[-1])
    assert sorted(p.name for p in state_dir(host).iterdir()) == [
        f"ckpt-{n:08d}" for n in range(6, 26)
    ]
    # a no-op apply records nothing; a comment-only edit records the new file
    assert host.apply(files[-1])["changed"] is False and len(history(host)) == 20
    edited = tmp_path / "edited.yaml"
    edited.write_text(files[-1].read_text() + "# a comment\n")
    host.apply(edited)
    rows = history(host)
    assert rows[0]["seq"] == 26 and rows[0]["result"] == "no changes" and rows[0]["live"]


def test_torn_record_is_reported_not_fatal(reap: Host) -> None:
    host = reap
    a, b, c = (host.config({"600": p}) for p in (5001, 5002, 5003))
    for cfg in (a, b, c):
        host.apply(cfg)
    (state_dir(host) / "ckpt-00000002").write_bytes(b'{"format": 1, "se')
    r = host.cli("history")
    assert r.returncode == 0 and "unreadable checkpoint" in r.stderr
    assert len(r.stdout.splitlines()) == 4  # header, 2 checkpoints, footer
    r = host.cli("history", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["unreadable"]) == 1
    assert host.cli("rollback").returncode == 0 and diff_rc(host, a) == 0


def test_failed_verification_rolls_back(reap: Host) -> None:
    """A concurrent writer (the drift test hook) removes a route between execute and the
    verifying re-probe: apply rolls back to the generation live before, then exits 5."""
    host = reap
    a = host.config({"600": 5001, "601": 5002})
    b = host.config({"600": 5003, "601": 5002, "602": 5004})
    gen_a = host.apply(a)["generation"]
    r = host.cli("apply", str(b), env={"MPLEXCTL_FAULT_DRIFT_AT": "before-verify"})
    assert r.returncode == 5, r.stderr
    line = r.stderr.strip()
    assert "verification failed after apply" in line and f"rolled back to {gen_a}" in line
    assert "route" in line.split("verification failed after apply:")[1]
    assert diff_rc(host, a) == 0
    assert route_of(live_prog(host), b"600") == 5001
    rows = history(host)
    assert [(r["state"], r["kind"], r["result"]) for r in rows] == [
        ("confirmed", "rollback", "verified"),
        ("rolled back", "apply", "verification failed"),
        ("confirmed", "apply", "verified"),
    ]


def test_contract_windows_revert_and_confirm(hosts: Any) -> None:
    """Two hosts at once (the 20 s window's wait covers the other checks):
    `apply B --confirm-within 20s` + confirm: 25 s later `diff B` exits 0;
    `apply B --confirm-within 5s`, no confirm: within 10 s `diff A` exits 0, B `reverted`;
    while it is pending a second apply is refused (exit 4), and `--force` stacks onto it."""
    kept, lapsed = hosts(), hosts()
    a1, b1 = kept.config({"600": 5001}), kept.config({"600": 5002})
    a2, b2 = lapsed.config({"600": 5001}), lapsed.config({"600": 5002})
    c2 = lapsed.config({"600": 5003})
    gen_a1 = kept.apply(a1)["generation"]
    lapsed.apply(a2)

    r = kept.cli("apply", str(b1), "--confirm-within", "20s")
    assert r.returncode == 0, r.stderr
    m = PENDING_LINE.search(r.stdout)
    assert m and m.group(2) == gen_a1, r.stdout
    assert [s for _, s in states(kept)] == ["pending", "confirmed"]
    assert history(kept)[0]["state_text"] == f"pending until {m.group(3)}"
    watchdog = pending(kept)["watchdog_pid"]  # type: ignore[index]
    assert alive(watchdog)
    r = kept.cli("confirm")
    assert r.returncode == 0 and "confirmed generation" in r.stdout
    confirmed_at = time.monotonic()
    assert pending(kept) is None and [s for _, s in states(kept)] == ["confirmed", "confirmed"]
    r = kept.cli("confirm", "--json")
    assert r.returncode == 0 and check(r.stdout, "confirm", 0)["changed"] is False
    assert "nothing to confirm" in json.loads(r.stdout)["message"]

    started = time.monotonic()
    r = lapsed.cli("apply", str(b2), "--confirm-within", "5s", "--json")
    assert r.returncode == 0, r.stderr
    doc = check(r.stdout, "apply", 0)
    assert doc["reverts_to"] and doc["pending_until"]
    refused = lapsed.cli("apply", str(c2), "--confirm-within", "5s")
    assert refused.returncode == 4 and "pending confirmation" in refused.stderr
    assert "--force" in refused.stderr and diff_rc(lapsed, b2) == 0
    refused = lapsed.cli("detach")  # its window would re-attach at the deadline
    assert refused.returncode == 4 and "rollback" in refused.stderr and live_prog(lapsed)
    stacked = lapsed.cli("apply", str(c2), "--force")
    assert stacked.returncode == 0 and PENDING_LINE.search(stacked.stdout), stacked.stderr
    assert wait_for(lambda: diff_rc(lapsed, a2) == 0, 10 - (time.monotonic() - started))
    assert time.monotonic() - started < 10
    assert [s for _, s in states(lapsed)] == ["confirmed", "reverted", "reverted", "confirmed"]
    assert history(lapsed)[0]["kind"] == "revert"

    assert wait_for(lambda: not alive(watchdog), 3)  # the confirmed window's watchdog left
    time.sleep(max(0.0, 25 - (time.monotonic() - confirmed_at)))
    assert diff_rc(kept, b1) == 0
    assert [s for _, s in states(kept)] == ["confirmed", "confirmed"]
    log = (Path(os.environ["MPLEXCTL_LOG_DIR"]) / "mplexctl.log").read_text()
    assert f"netns/{lapsed.ns}: the confirm window ended" in log
    assert f"netns/{kept.ns}: confirmed generation" in log


def test_watchdog_survives_its_callers_terminal_hangup(reap: Host) -> None:
    """apply runs in a shell on a pseudo-terminal (an ssh session); the terminal is closed
    (SIGHUP to the session): the watchdog is in its own session, no child of the caller,
    without a terminal, survives, and reverts at the deadline."""
    host = reap
    a, b = host.config({"600": 5001}), host.config({"600": 5002})
    host.apply(a)
    argv = [sys.executable, "-m", "mplexctl", "apply", str(b), "--netns", host.ns]
    script = " ".join(argv) + " --confirm-within 5s; echo DONE; sleep 60"
    pid, fd = pty.fork()
    if pid == 0:  # the "login shell" of the session
        os.chdir(ROOT)
        os.execvp("sh", ["sh", "-c", script])
    out = b""
    while b"DONE" not in out:
        ready, _, _ = select.select([fd], [], [], 20)
        assert ready, out
        out += os.read(fd, 4096)
    assert PENDING_LINE.search(out.decode().replace("\r", "")), out
    watchdog = pending(host)["watchdog_pid"]  # type: ignore[index]
    os.close(fd)  # hang up the terminal
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGHUP
    stat = _stat(watchdog)
    ppid, pgrp, session, tty = (int(x) for x in stat[3:7])
    assert alive(watchdog) and ppid != pid and session not in (pid, os.getsid(0))
    assert tty == 0 and pgrp == session != watchdog  # no terminal, never a session leader
    assert wait_for(lambda: live_prog(host) and route_of(live_prog(host), b"600") == 5001, 10)
    assert wait_for(lambda: not alive(watchdog), 5)
    assert [s for _, s in states(host)] == ["confirmed", "reverted", "confirmed"]


@pytest.mark.parametrize("verb", ["validate", "status"])
def test_killed_watchdog_then_any_verb_reverts(reap: Host, verb: str) -> None:
    host = reap
    a, b = host.config({"600": 5001}), host.config({"600": 5002})
    host.apply(a)
    r = host.cli("apply", str(b), "--confirm-within", "5s")
    assert r.returncode == 0, r.stderr
    watchdog = pending(host)["watchdog_pid"]  # type: ignore[index]
    os.kill(watchdog, signal.SIGKILL)
    time.sleep(max(0.0, pending(host)["deadline"] - time.time() + 0.5))  # type: ignore[index]
    assert route_of(live_prog(host), b"600") == 5002  # nobody reverted it yet
    if verb == "validate":  # a verb that touches no kernel state, run by ip netns exec
        r = subprocess.run(
            ["ip", "netns", "exec", host.ns, sys.executable, "-m", "mplexctl", "validate", str(a)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
    else:
        r = host.cli(verb)
    assert r.returncode == 0, r.stderr
    assert "confirm window ended" in r.stderr
    assert route_of(live_prog(host), b"600") == 5001
    assert pending(host) is None
    assert [s for _, s in states(host)] == ["confirmed", "reverted", "confirmed"]


def test_reboot_inside_the_window_comes_up_confirmed(reap: Host) -> None:
    """A reboot is simulated: the watchdog dies, the XDP program goes, and the pending file
    carries the boot id of another boot. The boot unit's command (`apply FILE --boot`, FILE
    holding the unconfirmed change) brings back the last confirmed generation instead."""
    host = reap
    a, b = host.config({"600": 5001}), host.config({"600": 5002})
    gen_a = host.apply(a)["generation"]
    assert host.cli("apply", str(b), "--confirm-within", "1m").returncode == 0
    p = pending(host)
    assert p is not None
    os.kill(p["watchdog_pid"], signal.SIGKILL)
    p["boot_id"] = "an-earlier-boot"
    (state_dir(host) / "pending.json").write_text(json.dumps(p))
    subprocess.run(["ip", "-n", host.ns, "link", "set", "dev", host.xdp, "xdp", "off"], check=True)
    assert live_prog(host) == 0

    r = host.cli("apply", str(b), "--boot")
    assert r.returncode == 0, r.stderr
    assert "rebooted inside the confirm window" in r.stderr
    assert diff_rc(host, a) == 0 and history(host)[0]["generation"] == gen_a
    assert [s for _, s in states(host)] == ["confirmed", "reverted", "confirmed"]
    # run again (the unit restarted): FILE still holds the change that was taken back
    r = host.cli("apply", str(b), "--boot")
    assert r.returncode == 0 and "taken back" in r.stderr and diff_rc(host, a) == 0

    # a rollback, then a reboot: the boot unit keeps the rolled-back-to generation too
    c = host.config({"600": 5003})
    host.apply(c)
    assert host.cli("rollback").returncode == 0
    subprocess.run(["ip", "-n", host.ns, "link", "set", "dev", host.xdp, "xdp", "off"], check=True)
    r = host.cli("apply", str(c), "--boot")
    assert r.returncode == 0 and diff_rc(host, a) == 0
    # a file edited since (never applied) is applied at boot as before
    d = host.config({"600": 5004})
    assert host.cli("apply", str(d), "--boot").returncode == 0 and diff_rc(host, d) == 0


def test_history_that_cannot_be_written(reap: Host) -> None:
    """An unwritable state directory: a plain apply still applies, with a warning; a confirm
    window is refused before anything changes (its revert would have nowhere to live)."""
    host = reap
    broken = {"MPLEXCTL_STATE_DIR": "/dev/null/state"}
    a, b = host.config({"600": 5001}), host.config({"600": 5002})
    r = host.cli("apply", str(a), env=broken)
    assert r.returncode == 0 and "warning: history not recorded" in r.stdout, r.stderr
    assert diff_rc(host, a) == 0
    r = host.cli("apply", str(b), "--confirm-within", "5s", env=broken)
    assert r.returncode == 3 and "cannot arm a confirm window" in r.stderr
    assert diff_rc(host, a) == 0


def test_window_with_nothing_before_detaches(reap: Host) -> None:
    """The first apply ever, with a window: unconfirmed, it is taken back by detaching."""
    host = reap
    a = host.config({"600": 5001})
    r = host.cli("apply", str(a), "--confirm-within", "5s")
    assert r.returncode == 0, r.stderr
    assert "; reverts to nothing (detach) at " in r.stdout and live_prog(host)
    deadline = pending(host)["deadline"]  # type: ignore[index]
    assert wait_for(lambda: live_prog(host) == 0, deadline - time.time() + 5)
    assert wait_for(lambda: pending(host) is None, 3)
    assert [s for _, s in states(host)] == ["reverted"]
    log = (Path(os.environ["MPLEXCTL_LOG_DIR"]) / "mplexctl.log").read_text()
    assert f"netns/{host.ns}: the confirm window ended" in log and "(nothing before)" in log


def test_an_apply_killed_inside_its_window_is_reverted(reap: Host) -> None:
    """The window (and its watchdog) is armed before anything changes: an apply killed half-way
    through a program swap is taken back at the deadline like an unconfirmed one."""
    host = reap
    a = host.config({"600": 5001})
    b = host.config({"600": 5002}, more_services=MORE)
    host.apply(a)
    r = host.cli(
        "apply", str(b), "--confirm-within", "5s", env={"MPLEXCTL_FAULT_KILL_AT": "after-attach"}
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    p = pending(host)
    assert p is not None and alive(p["watchdog_pid"])
    assert wait_for(lambda: pending(host) is None, p["deadline"] - time.time() + 5)
    assert diff_rc(host, a) == 0 and route_of(live_prog(host), b"600") == 5001
    assert [s for _, s in states(host)] == ["confirmed", "confirmed"]
    assert history(host)[0]["kind"] == "revert"
