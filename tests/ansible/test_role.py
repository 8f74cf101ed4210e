"""The Ansible role roles/mplex, run with the dev venv's ansible-playbook against inventory hosts
that are network namespaces of this machine (ansible_connection: local, mplex_netns per host).

Each host has its own namespace, veth and config (different routes), its own config path and
boot-unit directory under a scratch directory. Needs root; fails (never skips) when something is
missing. Traffic stays inside the namespaces the lab creates (tests/support/hosts.py: sites).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.samples import service_doc
from tests.support.hosts import Site, sites

pytestmark = pytest.mark.kernel

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_BIN = REPO / ".venv" / "bin"
MPLEXCTL = VENV_BIN / "mplexctl"
ANSIBLE_PLAYBOOK = VENV_BIN / "ansible-playbook"
# The module runs under the hosts' system Python, not the venv with mplexctl in it: it must not
# need mplexctl's interpreter (it only runs the CLI).
HOST_PYTHON = "/usr/bin/python3"
HOSTS = 3
APPLY_TASK = "Apply the configuration"
WRITE_TASK = "Write the configuration (mplexctl validates it first)"


def require_environment() -> None:
    problems = []
    if shutil.which("systemd-analyze") is None:
        problems.append("systemd-analyze is missing (it checks the boot unit)")
    if os.geteuid() != 0:
        problems.append("must run as root (network namespaces, XDP)")
    for tool in (MPLEXCTL, ANSIBLE_PLAYBOOK, Path(HOST_PYTHON)):
        if not os.access(tool, os.X_OK):
            problems.append(f"{tool} is missing (make setup installs the dev venv)")
    if shutil.which("ip") is None:
        problems.append("iproute2's ip is missing")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


def host_name(site: Site) -> str:
    return f"h{site.index}"


def routes_for(site: Site) -> dict[str, int]:
    base = 6000 + 10 * site.index
    return {"600": base + 1, "601": base + 2}


def config_for(site: Site, routes: dict[str, int], ifname: str | None = None) -> dict[str, Any]:
    interface = {"name": ifname or site.ifname, "xdp_mode": "auto"}
    return service_doc(routes=routes, interface=interface, unmatched="drop")


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    stats: dict[str, dict[str, int]]
    results: list[dict[str, Any]]

    def changed(self, host: str) -> int:
        return self.stats[host]["changed"]

    def failures(self, host: str) -> int:
        return self.stats[host]["failures"]

    def task(self, host: str, name: str) -> dict[str, Any]:
        found = [r for r in self.results if r["host"] == host and r["task"] == name]
        assert found, f"no result of task {name!r} on {host}\n{self.stdout}"
        return found[-1]

    def failed_tasks(self, host: str) -> list[dict[str, Any]]:
        return [r for r in self.results if r["host"] == host and r["status"] == "failed"]

    def explain(self) -> str:
        return f"rc={self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Deployment:
    """Inventory, playbook and scratch directories of one lab; runs ansible-playbook."""

    def __init__(self, sites: list[Site], root: Path, **group_vars: Any) -> None:
        self.sites = sites
        self.root = root
        self.runs = 0
        (root / "inventory" / "host_vars").mkdir(parents=True)
        (root / "ansible.cfg").write_text("[defaults]\n")
        (root / "site.yml").write_text(
            "---\n- name: Deploy mplex\n  hosts: all\n  gather_facts: false\n"
            "  roles:\n    - role: mplex\n"
        )
        hosts = {}
        for site in sites:
            hosts[host_name(site)] = {
                "mplex_netns": site.netns,
                "mplex_config_path": str(self.config_path(site)),
                "__mplex_systemd_dir": str(self.systemd_dir(site)),
            }
            self.set_config(site, config_for(site, routes_for(site)))
        inventory = {
            "all": {
                "vars": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": HOST_PYTHON,
                    "mplex_install": False,
                    "mplex_bin": str(MPLEXCTL),
                    **group_vars,
                },
                "hosts": hosts,
            }
        }
        (root / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))

    def config_path(self, site: Site) -> Path:
        return self.root / host_name(site) / "etc" / "mplex" / "config.yaml"

    def systemd_dir(self, site: Site) -> Path:
        return self.root / host_name(site) / "systemd"

    def unit_path(self, site: Site) -> Path:
        return self.systemd_dir(site) / f"mplex-netns-{site.netns}.service"

    def set_config(self, site: Site, config: dict[str, Any]) -> None:
        path = self.root / "inventory" / "host_vars" / f"{host_name(site)}.yml"
        path.write_text(yaml.safe_dump({"mplex_config": config}, sort_keys=False))

    def command(self, *args: str, playbook: str = "site.yml") -> tuple[list[str], Path]:
        """The ansible-playbook command line (run in self.root with self.env) and its record."""
        self.runs += 1
        record = self.root / f"record-{self.runs}.json"
        return [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(self.root / "inventory"),
            playbook,
            *args,
        ], record

    def env(self, record: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
                "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
                "ANSIBLE_CALLBACK_PLUGINS": str(HERE / "callback_plugins"),
                "ANSIBLE_CALLBACKS_ENABLED": "mplex_record",
                "ANSIBLE_LOCAL_TEMP": str(self.root / "tmp-local"),
                "ANSIBLE_REMOTE_TEMP": str(self.root / "tmp-remote"),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                "MPLEX_RECORD": str(record),
            }
        )
        return env

    def play(self, *args: str, playbook: str = "site.yml") -> Run:
        argv, record = self.command(*args, playbook=playbook)
        r = subprocess.run(
            argv,
            cwd=self.root,
            env=self.env(record),
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if not record.exists():
            pytest.fail(f"ansible-playbook wrote no record\n{r.stdout}\n{r.stderr}")
        data = json.loads(record.read_text())
        return Run(r.returncode, r.stdout, r.stderr, data["stats"], data["results"])


def status(site: Site) -> list[dict[str, Any]]:
    r = subprocess.run(
        [str(MPLEXCTL), "status", "--json", "--netns", site.netns],
        capture_output=True,
        text=True,
        check=True,
    )
    rows: list[dict[str, Any]] = json.loads(r.stdout)["interfaces"]
    return rows


def kernel_view(site: Site) -> dict[str, Any]:
    """What is live on the host's interfaces: program ids, generations and routes (no counters)."""
    return {
        row["interface"]: {
            "prog_id": row["prog_id"],
            "owner": row["owner"],
            "generation": row["generation"],
            "routes": {
                svc: {tag: route["port"] for tag, route in body["routes"].items()}
                for svc, body in row["services"].items()
            },
        }
        for row in status(site)
    }


def assert_routing(site: Site, routes: dict[str, int]) -> None:
    """Each routed tag arrives on its port; an unknown tag is dropped (unmatched: drop)."""
    ports = sorted(set(routes.values()) | {6000 + 10 * i + j for i in range(HOSTS) for j in (1, 2)})
    got = site.route_of([*routes, "999"], ports)
    assert got == {**routes, "999": 0}, f"{site.netns}: routed as {got}, want {routes}"


def verify_unit(unit: Path) -> None:
    """systemd's own check of the unit file (works without a running systemd)."""
    r = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0 and not r.stderr.strip(), f"{unit}: {r.stdout}{r.stderr}"


def build_wheel(root: Path) -> Path:
    """mplexctl's wheel, built from a copy of the checkout (nothing is written into the repo)."""
    src = root / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("mplexctl", "bpf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run(
        [str(VENV_BIN / "pip"), "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = (root / "dist").glob("mplexctl-*.whl")
    return wheel


def diff_lines(stdout: str) -> list[str]:
    return [
        line
        for line in stdout.splitlines()
        if line[:1] in ("+", "-") and not line.startswith(("+++", "---"))
    ]


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[Any]:
    require_environment()
    with ExitStack() as stack:
        made = 0

        def make(count: int, **group_vars: Any) -> Deployment:
            nonlocal made
            made += 1
            lab = stack.enter_context(sites(count))
            return Deployment(lab, tmp_path / f"lab{made}", **group_vars)

        yield make


def test_role_on_three_namespace_hosts(lab_factory: Any) -> None:
    dep: Deployment = lab_factory(HOSTS)
    sites = dep.sites
    hosts = [host_name(s) for s in sites]

    # Run 1: every host changes, is routed per its own config, and gets its boot unit.
    run = dep.play()
    assert run.rc == 0, run.explain()
    for site, host in zip(sites, hosts, strict=True):
        assert run.failures(host) == 0
        assert run.changed(host) > 0, run.explain()
        applied = run.task(host, APPLY_TASK)["result"]
        assert applied["changed"] and applied["plan"] and applied["generation"]
        assert site.xdp_prog()[1] == "mplex_xdp"
        assert_routing(site, routes_for(site))
        unit = dep.unit_path(site)
        text = unit.read_text()
        assert f"apply --boot {dep.config_path(site)} --netns {site.netns}\n" in text
        assert "After=network-online.target" in text and "Type=oneshot" in text
        verify_unit(unit)
        link = dep.systemd_dir(site) / "multi-user.target.wants" / unit.name
        assert link.is_symlink() and link.resolve() == unit.resolve()
        written = yaml.safe_load(dep.config_path(site).read_text())
        assert written == config_for(site, routes_for(site))
    prog_ids = {h: s.xdp_prog()[0] for s, h in zip(sites, hosts, strict=True)}

    # Run 2: idempotent, nothing reloaded.
    run = dep.play()
    assert run.rc == 0, run.explain()
    assert {h: run.changed(h) for h in hosts} == dict.fromkeys(hosts, 0), run.explain()
    assert {h: s.xdp_prog()[0] for s, h in zip(sites, hosts, strict=True)} == prog_ids

    # Edit one host's routes; --check --diff reports that host only, shows exactly that route
    # change, and touches nothing.
    edited, old_port, new_port = sites[1], routes_for(sites[1])["601"], 6019
    new_routes = {**routes_for(edited), "601": new_port}
    dep.set_config(edited, config_for(edited, new_routes))
    kernel_before = {s.netns: kernel_view(s) for s in sites}
    file_before = dep.config_path(edited).read_bytes()
    run = dep.play("--check", "--diff")
    assert run.rc == 0, run.explain()
    changed = {h: run.changed(h) for h in hosts}
    assert changed[host_name(edited)] > 0 and sum(changed.values()) == changed["h1"], changed
    planned = run.task("h1", APPLY_TASK)["result"]
    assert planned["changed"] and len(planned["plan"]) >= 1
    assert planned["after"]["interfaces"][edited.ifname]["services"]["telemetry"]["routes"] == {
        "600": routes_for(edited)["600"],
        "601": new_port,
    }
    for h in ("h0", "h2"):
        assert run.task(h, APPLY_TASK)["result"]["plan"] == []
    lines = diff_lines(run.stdout)
    assert lines, run.explain()
    for line in lines:
        assert "601" in line and (str(old_port) in line or str(new_port) in line), (
            f"diff line not about the edited route: {line!r}\n{run.stdout}"
        )
    # both the file diff and the live-state diff of the module show the change
    assert sum(1 for ln in lines if ln.startswith("-") and str(old_port) in ln) >= 2
    assert sum(1 for ln in lines if ln.startswith("+") and str(new_port) in ln) >= 2
    assert {s.netns: kernel_view(s) for s in sites} == kernel_before
    assert dep.config_path(edited).read_bytes() == file_before
    assert_routing(edited, routes_for(edited))

    # Apply the edit for real: only that host changes, and its traffic follows.
    run = dep.play()
    assert run.rc == 0, run.explain()
    assert {h: run.changed(h) > 0 for h in hosts} == {"h0": False, "h1": True, "h2": False}
    assert_routing(edited, new_routes)
    for site in (sites[0], sites[2]):
        assert_routing(site, routes_for(site))

    # A bad config fails at validate: nothing lands, the running config stays.
    bad_site = sites[2]
    dep.set_config(bad_site, config_for(bad_site, {"600": 70000, "601": 6022}))
    kernel_before = kernel_view(bad_site)
    file_before = dep.config_path(bad_site).read_bytes()
    run = dep.play()
    assert run.rc != 0, run.explain()
    assert run.failures("h2") == 1 and run.failures("h0") == 0 and run.failures("h1") == 0
    assert run.changed("h0") == 0 and run.changed("h1") == 0
    (failed,) = run.failed_tasks("h2")
    assert failed["task"] == WRITE_TASK, failed
    assert "70000" in json.dumps(failed["result"]), failed
    assert "Traceback" not in run.stdout
    assert not any(r["host"] == "h2" and r["task"] == APPLY_TASK for r in run.results)
    assert dep.config_path(bad_site).read_bytes() == file_before
    assert kernel_view(bad_site) == kernel_before
    assert_routing(bad_site, routes_for(bad_site))
    dep.set_config(bad_site, config_for(bad_site, routes_for(bad_site)))

    # state: absent detaches the program and removes the config and the boot unit.
    run = dep.play("-e", "mplex_state=absent")
    assert run.rc == 0, run.explain()
    for site, host in zip(sites, hosts, strict=True):
        assert run.changed(host) > 0
        assert run.task(host, "Detach every mplex program")["result"]["detached"] == [site.ifname]
        assert site.xdp_prog() == (0, "")
        assert not dep.config_path(site).exists()
        assert not dep.unit_path(site).exists()
        assert not (
            dep.systemd_dir(site) / "multi-user.target.wants" / dep.unit_path(site).name
        ).is_symlink()
    run = dep.play("-e", "mplex_state=absent")
    assert run.rc == 0, run.explain()
    assert {h: run.changed(h) for h in hosts} == dict.fromkeys(hosts, 0), run.explain()


def test_role_reports_mplexctl_refusals(lab_factory: Any) -> None:
    dep: Deployment = lab_factory(1)
    (site,) = dep.sites

    # A valid config the host cannot carry (no such interface): the apply task fails with
    # mplexctl's message and exit code, not a traceback.
    dep.set_config(site, config_for(site, routes_for(site), ifname=f"{site.ifname[:-2]}-q"))
    run = dep.play()
    assert run.rc != 0 and run.failures("h0") == 1, run.explain()
    (failed,) = run.failed_tasks("h0")
    assert failed["task"] == APPLY_TASK
    assert failed["result"]["exit_code"] == 3
    assert f"not in network namespace {site.netns!r}" in failed["result"]["msg"]
    assert "Traceback" not in run.stdout + run.stderr

    # A foreign XDP program: refused (exit 4) and left in place, unless mplex_force.
    dep.set_config(site, config_for(site, routes_for(site)))
    site.attach_foreign(str(VENV_BIN / "python"))
    foreign = site.xdp_prog()
    assert foreign[0] and foreign[1] == "other_xdp"
    run = dep.play()
    assert run.rc != 0, run.explain()
    (failed,) = run.failed_tasks("h0")
    assert failed["task"] == APPLY_TASK and failed["result"]["exit_code"] == 4
    assert "--force" in failed["result"]["msg"]
    assert site.xdp_prog() == foreign
    run = dep.play("--check", "-e", "mplex_force=true")
    assert run.rc == 0 and run.changed("h0") > 0, run.explain()
    assert site.xdp_prog() == foreign
    run = dep.play("-e", "mplex_force=true")
    assert run.rc == 0 and run.changed("h0") > 0, run.explain()
    assert site.xdp_prog()[1] == "mplex_xdp"
    assert_routing(site, routes_for(site))
    assert " --force\n" in dep.unit_path(site).read_text()


def test_role_installs_mplexctl_from_a_wheel(lab_factory: Any, tmp_path: Path) -> None:
    """mplex_install: apt packages, headers, a venv of its own (bcc importable), the wheel the
    controller provides; check mode first touches nothing; then idempotent."""
    wheel = build_wheel(tmp_path / "build")
    venv = tmp_path / "venv"
    dep: Deployment = lab_factory(
        1,
        mplex_install=True,
        mplex_package=str(wheel),
        mplex_bin="{{ __mplex_venv }}/bin/mplexctl",
        __mplex_venv=str(venv),
        __mplex_dist_dir=str(tmp_path / "dist-on-host"),
    )
    (site,) = dep.sites

    run = dep.play("--check")
    assert run.rc == 0 and run.changed("h0") > 0, run.explain()
    assert not venv.exists() and not dep.config_path(site).exists()
    assert site.xdp_prog() == (0, "")

    run = dep.play()
    assert run.rc == 0 and run.changed("h0") > 0, run.explain()
    installed = venv / "bin" / "mplexctl"
    r = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bcc, mplexctl; print(mplexctl.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and str(venv) in r.stdout, r.stdout + r.stderr
    assert run.task("h0", APPLY_TASK)["result"]["invocation"]["module_args"]["bin"] == str(
        installed
    )
    assert site.xdp_prog()[1] == "mplex_xdp"
    assert_routing(site, routes_for(site))
    assert f"ExecStart={installed} apply " in dep.unit_path(site).read_text()

    run = dep.play()
    assert run.rc == 0 and run.changed("h0") == 0, run.explain()
