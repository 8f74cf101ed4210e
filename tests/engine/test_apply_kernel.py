"""apply / diff / status / detach against the real kernel, each test in a fresh netns."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.foreign import attach_foreign
from tests.support.hosts import ROOT, Host, route_of

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("accel")]


def test_apply_then_noop_apply_compiles_nothing(host: Host) -> None:
    cfg = host.config()
    first = host.apply(cfg)
    assert first["changed"] and first["verified"] and first["compiles"] == 1
    assert next(c["action"] for c in first["plan"]) == "attach"
    second = host.apply(cfg)
    assert second["changed"] is False and second["plan"] == [] and second["compiles"] == 0
    text = host.cli("apply", str(cfg))
    assert text.returncode == 0 and text.stdout.strip() == "no changes"
    st = host.status()
    assert st["owner"] == "mplex" and st["generation"] == first["generation"]
    assert route_of(st["prog_id"], b"601") == 5002
    prom = host.cli("status", "--prometheus").stdout
    assert f'mplex_info{{interface="{host.xdp}",prog_id="{st["prog_id"]}"' in prom
    assert (
        f'mplex_route_packets_total{{interface="{host.xdp}",service="telemetry",'
        'tag="601",port="5002"} 1'
    ) in prom
    assert "# TYPE mplex_service_bytes_total counter" in prom


def test_route_change_is_in_place(host: Host) -> None:
    host.apply(host.config())
    prog = host.status()["prog_id"]
    new = host.config({"600": 5001, "601": 5009, "602": 5003})
    diff = host.cli("diff", str(new), "--json")
    assert diff.returncode == 1
    assert [c["action"] for c in json.loads(diff.stdout)["plan"]] == ["route"]
    res = host.apply(new)
    assert res["compiles"] == 0 and res["changed"]
    assert host.status()["prog_id"] == prog
    assert route_of(prog, b"601") == 5009 and route_of(prog, b"600") == 5001
    assert host.cli("diff", str(new)).returncode == 0


def test_table_swap_and_window_change_in_place(host: Host) -> None:
    host.apply(host.config())
    prog = host.status()["prog_id"]
    assert route_of(prog, b"600") == 5001  # counted before the swap; the counter is kept
    new = host.config({"600": 5011, "603": 5013}, window=(280, 300))
    res = host.apply(new)
    assert {c["action"] for c in res["plan"]} == {"table"} and res["compiles"] == 0
    assert host.status()["prog_id"] == prog
    assert route_of(prog, b"600", length=281) == 5011
    assert route_of(prog, b"603") == 5013
    assert route_of(prog, b"601") is None  # removed route: unmatched drop
    routes = host.status()["services"]["telemetry"]["routes"]
    assert routes == {
        "600": {"port": 5011, "packets": 2, "bytes": 2 * (14 + 20 + 8) + 281 + 292},
        "603": {"port": 5013, "packets": 1, "bytes": 14 + 20 + 8 + 292},
    }


def test_new_service_swaps_program_atomically(host: Host) -> None:
    host.apply(host.config())
    old = host.status()["prog_id"]
    more = (
        "  - name: other\n    protocol: tcp\n    port: 6000\n"
        "    payload_length: [{min: 10, max: 20}]\n    tag: {offset: 0, length: 1}\n"
        '    routes: {"a": 6001}\n'
    )
    res = host.apply(host.config(more_services=more))
    assert res["plan"][0]["action"] == "swap" and res["compiles"] == 1
    new = host.status()["prog_id"]
    assert new != old and route_of(new, b"600") == 5001
    assert set(host.status()["services"]) == {"telemetry", "other"}


def test_foreign_program_refused_then_forced(host: Host) -> None:
    attach_foreign(host.ns, host.xdp)
    before = host.cli("status", "--json", host.xdp)
    foreign = json.loads(before.stdout)["interfaces"][0]
    assert foreign["owner"] == "foreign" and foreign["program"] == "other_xdp"
    cfg = host.config()
    res = host.apply(cfg, ok=False)
    assert res["_rc"] == 4 and res["failed"]
    assert f"other_xdp' (id {foreign['prog_id']})" in res["_stderr"]
    assert host.status()["prog_id"] == foreign["prog_id"]  # left attached
    det = host.cli("detach", host.xdp)
    assert det.returncode == 4 and host.status()["prog_id"] == foreign["prog_id"]
    assert host.cli("detach").returncode == 0  # "all" means all of mplex's: none here
    assert host.status()["prog_id"] == foreign["prog_id"]
    forced = host.apply(cfg, "--force")
    assert forced["plan"][0]["action"] == "replace-foreign"
    assert host.status()["owner"] == "mplex"


@pytest.mark.parametrize("point", ["after-load", "after-fill", "after-attach"])
def test_kill9_during_attach_then_reapply_converges(host: Host, point: str) -> None:
    cfg = host.config()
    r = host.cli("apply", str(cfg), env={"MPLEXCTL_FAULT_KILL_AT": point})
    assert r.returncode == -9
    res = host.apply(cfg)
    assert res["verified"]
    assert host.cli("diff", str(cfg)).returncode == 0
    assert route_of(host.status()["prog_id"], b"602") == 5003


@pytest.mark.parametrize("point", ["after-routes", "after-flip", "before-meta"])
def test_kill9_during_table_swap_then_reapply_converges(host: Host, point: str) -> None:
    host.apply(host.config())
    prog = host.status()["prog_id"]
    new = host.config({"600": 5021, "601": 5022})
    r = host.cli("apply", str(new), env={"MPLEXCTL_FAULT_KILL_AT": point})
    assert r.returncode == -9
    # Whatever the crash left, packets see a whole table: the old one or the new one.
    seen = (route_of(prog, b"600"), route_of(prog, b"601"), route_of(prog, b"602"))
    assert seen in {(5001, 5002, 5003), (5021, 5022, None)}
    res = host.apply(new)
    assert res["verified"] and host.cli("diff", str(new)).returncode == 0
    assert host.status()["prog_id"] == prog
    assert (route_of(prog, b"600"), route_of(prog, b"602")) == (5021, None)


def test_concurrent_applies_end_consistent(host: Host) -> None:
    a = host.config({"600": 5001})
    b = host.config({"600": 5002, "601": 5003}, window=(200, 300))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: host.cli("apply", str(a if i % 2 else b)), range(8)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    same_a = host.cli("diff", str(a)).returncode == 0
    same_b = host.cli("diff", str(b)).returncode == 0
    assert same_a != same_b  # exactly one of the two, whole
    assert host.status()["owner"] == "mplex"


def test_drift_is_detected_and_repaired(host: Host) -> None:
    cfg = host.config()
    host.apply(cfg)
    prog = host.status()["prog_id"]
    # Someone edits a route by hand, straight in the kernel map.
    code = (
        "from mplexctl.backend.program import ProgramMaps\n"
        "from mplexctl.compiler import layout\n"
        f"pm = ProgramMaps.open({prog})\n"
        "pm.write_routes([(layout.route_key(0, 0, b'601'), layout.route_value(7777))])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    diff = host.cli("diff", str(cfg))
    assert diff.returncode == 1 and 'route "601": 7777 -> 5002' in diff.stdout
    host.apply(cfg)
    assert route_of(prog, b"601") == 5002
    # Someone detaches the program.
    subprocess.run(["ip", "-n", host.ns, "link", "set", host.xdp, "xdp", "off"], check=True)
    diff = host.cli("diff", str(cfg))
    assert diff.returncode == 1 and "attach" in diff.stdout
    host.apply(cfg)
    assert host.cli("diff", str(cfg)).returncode == 0


def test_interface_dropped_from_the_file_is_detached(host: Host) -> None:
    subprocess.run(["ip", "-n", host.ns, "link", "set", host.peer, "up"], check=True)
    both = (
        host.config(head="")
        .read_text()
        .replace(
            f"{{name: {host.xdp}, xdp_mode: auto}}", f"{{name: {host.xdp}}}, {{name: {host.peer}}}"
        )
    )
    path = host.tmp / "both.yaml"
    path.write_text(both)
    res = host.apply(path)
    attached = {c["interface"] for c in res["plan"] if c["action"] == "attach" and not c["service"]}
    assert attached == {host.xdp, host.peer}
    res = host.apply(host.config())
    acts = {(c["interface"], c["action"]) for c in res["plan"]}
    assert acts == {(host.peer, "detach"), (host.xdp, "metadata")}  # new generation recorded
    peer = json.loads(host.cli("status", "--json", host.peer).stdout)["interfaces"][0]
    assert peer["owner"] == "none" and host.status()["owner"] == "mplex"


def test_ip_netns_exec_works_without_pins(host: Host) -> None:
    cfg = host.config()

    def ns_exec(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", host.ns, sys.executable, "-m", "mplexctl", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )

    assert ns_exec("apply", str(cfg)).returncode == 0
    assert ns_exec("diff", str(cfg)).returncode == 0
    again = ns_exec("apply", "--json", str(cfg))
    assert json.loads(again.stdout)["changed"] is False
    assert "generation" in ns_exec("status").stdout
    assert ns_exec("detach").returncode == 0
    assert host.status()["owner"] == "none"


def test_failed_apply_keeps_previous_config(host: Host) -> None:
    cfg = host.config()
    host.apply(cfg)
    prog = host.status()["prog_id"]
    bad = host.config({"600": 5000})  # targets a service port: invalid
    r = host.apply(bad, ok=False)
    assert r["_rc"] == 2 and host.status()["prog_id"] == prog
    # A bridge has no native XDP: `xdp_mode: native` on it must fail the apply, and the
    # route change of the same file must not reach the running program.
    subprocess.run(["ip", "-n", host.ns, "link", "add", "dum0", "type", "bridge"], check=True)
    missing = (
        host.config(head="")
        .read_text()
        .replace(f"{{name: {host.xdp}, xdp_mode: auto}}", f"{{name: {host.xdp}}}, {{name: nope0}}")
    )
    path = host.tmp / "missing.yaml"
    path.write_text(missing)
    r = host.apply(path, ok=False)
    assert r["_rc"] == 3 and "nope0" in r["_stderr"]
    native_dummy = host.tmp / "dummy.yaml"
    native_dummy.write_text(
        missing.replace("{name: nope0}", "{name: dum0, xdp_mode: native}").replace(
            '"601": 5002', '"601": 5008'
        )
    )
    r = host.apply(native_dummy, ok=False)
    assert r["_rc"] == 3 and "native XDP" in r["_stderr"], r
    assert route_of(prog, b"601") == 5002
    assert host.status()["prog_id"] == prog
