"""The role without a kernel: lint, syntax, argument specs, the validate path, and the module's
adapter logic against a stub mplexctl. No root needed; fails (never skips) when a tool is missing.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.samples import service_doc

pytestmark = pytest.mark.unit

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
VENV_BIN = REPO / ".venv" / "bin"
ROLE = REPO / "roles" / "mplex"
MODULE = ROLE / "library" / "mplex_apply.py"
CONFIRM_MODULE = ROLE / "library" / "mplex_confirm.py"
EXAMPLES = REPO / "examples" / "ansible"


def tool(name: str) -> Path:
    path = VENV_BIN / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing (make setup installs the dev venv with it)", pytrace=False)
    return path


def ansible_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    (root / "ansible.cfg").write_text("[defaults]\n")
    env.update(
        {
            "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
            "ANSIBLE_LOCAL_TEMP": str(root / "tmp-local"),
            "ANSIBLE_REMOTE_TEMP": str(root / "tmp-remote"),
            "ANSIBLE_NOCOLOR": "1",
        }
    )
    return env


def test_ansible_lint_production_profile() -> None:
    r = subprocess.run(
        [
            str(tool("ansible-lint")),
            "--offline",
            "--profile",
            "production",
            "roles/mplex",
            "examples/ansible",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_example_wheel_version_comes_from_the_package(tmp_path: Path) -> None:
    """site.yml names the wheel with the version read from mplexctl/__init__.py."""
    from mplexctl import __version__

    text = (EXAMPLES / "site.yml").read_text()
    assert __version__ not in text
    expr = yaml.safe_load(text)[0]["vars"]["mplexctl_version"]
    r = subprocess.run(
        [
            *(str(tool("ansible")), "localhost", "-c", "local", "-m", "ansible.builtin.debug"),
            *("-a", f"msg={expr}", "--playbook-dir", str(EXAMPLES)),
        ],
        cwd=EXAMPLES,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0 and f'"msg": "{__version__}"' in r.stdout, r.stdout + r.stderr


def test_examples_syntax_check() -> None:
    r = subprocess.run(
        [str(tool("ansible-playbook")), "--syntax-check", "site.yml", "remove.yml", "rollout.yml"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_argument_specs_cover_every_default() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, value in defaults.items():
        want = value
        if name == "mplex_bin":
            want = value.replace("{{ __mplex_venv }}", defaults["__mplex_venv"])
        assert options[name]["default"] == want, name
        assert options[name]["description"], name
    assert options["mplex_state"]["choices"] == ["present", "absent"]


@pytest.mark.parametrize("module", [MODULE, CONFIRM_MODULE], ids=lambda p: p.stem)
def test_module_documentation_matches_its_argument_spec(module: Path) -> None:
    r = subprocess.run(
        [
            str(VENV_BIN / "python"),
            "-c",
            "import runpy, json, sys; m = runpy.run_path(sys.argv[1]); "
            "print(json.dumps({'doc': m['DOCUMENTATION'], 'spec': m['ARGUMENT_SPEC']}))",
            str(module),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(r.stdout)
    doc = yaml.safe_load(data["doc"])["options"]
    spec = data["spec"]
    assert set(doc) == set(spec)
    for name, opt in spec.items():
        assert doc[name]["type"] == opt["type"], name
        assert doc[name].get("default") == opt.get("default"), name
        assert doc[name].get("choices") == opt.get("choices"), name
        for sub, sub_opt in (opt.get("options") or {}).items():
            sub_doc = doc[name]["suboptions"][sub]
            assert (sub_doc["type"], sub_doc.get("default")) == (
                sub_opt["type"],
                sub_opt.get("default"),
            ), f"{name}.{sub}"


# --- the role's checks and the validate path (no kernel: nothing gets as far as applying) ---
def play(root: Path, host_vars: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    inventory = {
        "all": {
            "hosts": {
                "h0": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "/usr/bin/python3",
                    "mplex_install": False,
                    "mplex_bin": str(VENV_BIN / "mplexctl"),
                    "mplex_netns": "mpxa-never-created",
                    "mplex_config_path": str(root / "etc" / "config.yaml"),
                    "__mplex_systemd_dir": str(root / "systemd"),
                    **host_vars,
                }
            }
        }
    }
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (root / "site.yml").write_text(
        "- name: Deploy mplex\n  hosts: all\n  gather_facts: false\n  roles:\n    - mplex\n"
    )
    return subprocess.run(
        [str(tool("ansible-playbook")), "-i", "hosts.yml", "site.yml", *args],
        cwd=root,
        env=ansible_env(root),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


GOOD = service_doc(interface={"name": "mpxa-nic0"})


def test_argument_spec_rejects_a_bad_state(tmp_path: Path) -> None:
    r = play(tmp_path, {"mplex_config": GOOD, "mplex_state": "gone"})
    assert r.returncode != 0
    assert "mplex_state" in r.stdout and "present, absent" in r.stdout, r.stdout
    assert not (tmp_path / "etc").exists()


def test_config_required_exactly_once(tmp_path: Path) -> None:
    r = play(tmp_path, {})
    assert r.returncode != 0 and "set exactly one of mplex_config" in r.stdout, r.stdout
    src = tmp_path / "config.yaml.j2"
    src.write_text(yaml.safe_dump(GOOD))
    r = play(tmp_path, {"mplex_config": GOOD, "mplex_config_src": str(src)})
    assert r.returncode != 0 and "set exactly one of mplex_config" in r.stdout, r.stdout


def test_config_is_written_with_the_notice_last(tmp_path: Path) -> None:
    """Lines of the file are the lines of the config (the notice shifts nothing)."""
    play(tmp_path, {"mplex_config": GOOD})  # the apply then fails: no such namespace
    lines = (tmp_path / "etc" / "config.yaml").read_text().splitlines()
    assert lines[-1] == "# Managed by Ansible (role mplex): local edits are overwritten."
    assert yaml.safe_load("\n".join(lines)) == GOOD and not lines[0].startswith("#")


def test_bad_config_fails_at_validate_and_never_lands(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["services"][0]["port"] = 70000
    r = play(tmp_path, {"mplex_config": bad})
    assert r.returncode != 0
    assert "TASK [mplex : Write the configuration (mplexctl validates it first)]" in r.stdout
    assert "services[0].port: 70000 is out of range" in r.stdout, r.stdout
    line = yaml.safe_dump(bad).splitlines().index("  port: 70000") + 1
    assert f"mplex_config (as YAML):{line}: services[0].port: 70000" in r.stdout, r.stdout
    assert "Apply the configuration" not in r.stdout
    assert not (tmp_path / "etc" / "config.yaml").exists()

    # from a template file too, and an existing file stays as it was
    config = tmp_path / "etc" / "config.yaml"
    config.write_text("# the running config\n")
    src = tmp_path / "mplex.yaml.j2"
    src.write_text(yaml.safe_dump(bad).replace("70000", "{{ 69999 + 1 }}"))
    r = play(tmp_path, {"mplex_config_src": str(src)})
    assert r.returncode != 0 and "70000 is out of range" in r.stdout, r.stdout
    # the message names the template and the line of it (no header line shifts it)
    line = src.read_text().splitlines().index("  port: {{ 69999 + 1 }}") + 1
    assert f"{src} (as rendered):{line}: services[0].port: 70000" in r.stdout, r.stdout
    assert config.read_text() == "# the running config\n"


# --- the module's adapter logic, against a stub mplexctl -----------------------------------------
STUB = """#!/bin/sh
printf '%s\\n' "$@" >> "$STUB_DIR/argv"
echo --- >> "$STUB_DIR/argv"
verb=$1
cat "$STUB_DIR/$verb.out" 2>/dev/null
[ -f "$STUB_DIR/$verb.next" ] && mv "$STUB_DIR/$verb.next" "$STUB_DIR/$verb.out"
[ -f "$STUB_DIR/$verb.err" ] && sed "s|@FILE@|$3|g" "$STUB_DIR/$verb.err" >&2
exit "$(cat "$STUB_DIR/$verb.rc" 2>/dev/null || echo 0)"
"""


class Stub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "mplexctl"
        self.bin.write_text(STUB)
        self.bin.chmod(self.bin.stat().st_mode | stat.S_IXUSR)

    def answer(self, verb: str, out: Any, rc: int = 0, err: str = "") -> None:
        text = out if isinstance(out, str) else json.dumps(out)
        (self.root / f"{verb}.out").write_text(text)
        (self.root / f"{verb}.rc").write_text(str(rc))
        if err:
            (self.root / f"{verb}.err").write_text(err)

    def calls(self) -> list[list[str]]:
        text = (self.root / "argv").read_text() if (self.root / "argv").exists() else ""
        out, cur = [], []
        for line in text.splitlines():
            if line == "---":
                out.append(cur)
                cur = []
            else:
                cur.append(line)
        return out

    def then(self, verb: str, out: Any) -> None:
        """What the verb's next call prints (after the one answer() set)."""
        (self.root / f"{verb}.next").write_text(json.dumps(out))

    def run(
        self, check: bool = False, diff: bool = False, module: Path = MODULE, **params: Any
    ) -> dict[str, Any]:
        args = {"bin": str(self.bin), "_ansible_check_mode": check, "_ansible_diff": diff}
        args.update(params)
        argfile = self.root / "args.json"
        argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        r = subprocess.run(
            ["/usr/bin/python3", str(module), str(argfile)],
            env={
                **os.environ,
                "STUB_DIR": str(self.root),
                "PYTHONPATH": str(next((REPO / ".venv" / "lib").glob("python3*/site-packages"))),
            },
            capture_output=True,
            text=True,
            check=False,
        )
        assert r.stdout.strip(), r.stderr
        result: dict[str, Any] = json.loads(r.stdout)
        assert "Traceback" not in r.stdout + r.stderr
        return result


def live(port: int, mode: str = "native", generation: str = "g1") -> dict[str, Any]:
    return {
        "interfaces": {
            "eth0": {
                "mode": mode,
                "generation": generation,
                "services": {"telemetry": {"port": 5000, "routes": {"600": port}}},
            }
        }
    }


@pytest.fixture
def stub(tmp_path: Path) -> Stub:
    tool("python")
    return Stub(tmp_path)


def test_module_changed_only_with_a_plan(stub: Stub) -> None:
    same = {
        "changed": False,
        "generation": "g1",
        "plan": [],
        "before": live(5001),
        "after": live(5001),
        "verified": True,
        "check": False,
    }
    stub.answer("apply", same)
    res = stub.run(path="/etc/mplex/config.yaml", netns="blue")
    assert res["changed"] is False and res["generation"] == "g1" and res["plan"] == []
    assert stub.calls()[-1] == ["apply", "--json", "--netns", "blue", "/etc/mplex/config.yaml"]
    step = {"interface": "eth0", "action": "update", "impact": "hitless", "detail": "route 600"}
    stub.answer("apply", {**same, "changed": True, "plan": [step], "after": live(5009)})
    res = stub.run(path="/etc/mplex/config.yaml", force=True)
    assert res["changed"] is True and res["plan"] == [step]
    assert stub.calls()[-1] == ["apply", "--json", "/etc/mplex/config.yaml", "--force"]


def test_module_check_mode_plans_the_content_with_check(stub: Stub) -> None:
    step = {"interface": "eth0", "action": "update", "impact": "hitless", "detail": "route 600"}
    stub.answer(
        "apply",
        {
            "changed": True,
            "generation": "g2",
            "plan": [step],
            "before": live(5001),
            "after": live(5009, "auto", "g2"),
            "verified": False,
            "check": True,
        },
    )
    res = stub.run(check=True, diff=True, path="/etc/mplex/config.yaml", content="version: 1\n")
    argv = stub.calls()[-1]
    assert argv[:2] == ["apply", "--json"] and argv[-1] == "--check"
    assert argv[2] != "/etc/mplex/config.yaml" and argv[2].endswith(".yaml")
    assert res["changed"] is True
    before, after = res["diff"]["before"], res["diff"]["after"]
    assert "generation" not in before + after
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert changed == [('            "600": 5001', '            "600": 5009')], changed


def test_module_failures_carry_mplexctl_message_and_exit_code(stub: Stub) -> None:
    stub.answer(
        "apply",
        {"failed": True, "msg": "eth0 carries XDP program 'x' (id 7): use --force", "exit_code": 4},
        rc=4,
        err="mplexctl: error: eth0 carries XDP program 'x' (id 7): use --force",
    )
    res = stub.run(path="/etc/mplex/config.yaml")
    assert res["failed"] is True and res["exit_code"] == 4 and res["rc"] == 4
    assert res["msg"] == "eth0 carries XDP program 'x' (id 7): use --force"
    # no JSON at all (e.g. an mplexctl that crashed early): stderr becomes the message
    stub.answer("apply", "", rc=3, err="mplexctl: error: network namespace 'x' does not exist")
    res = stub.run(path="/etc/mplex/config.yaml")
    assert res["failed"] is True and res["msg"] == "network namespace 'x' does not exist"
    # check mode names the real file, not the temporary copy it planned
    stub.answer("apply", "", rc=2, err="@FILE@:3: version: must be 1")
    res = stub.run(check=True, path="/etc/mplex/config.yaml", content="version: 2\n")
    assert res["failed"] is True and res["exit_code"] == 2
    assert res["msg"] == "/etc/mplex/config.yaml:3: version: must be 1"


def test_module_absent(stub: Stub) -> None:
    rows = [
        {"interface": "eth0", "owner": "mplex", "mode": "native", "services": {"t": {}}},
        {"interface": "eth1", "owner": "foreign", "mode": "native", "services": {}},
    ]
    stub.answer("status", {"failed": False, "exit_code": 0, "interfaces": rows})
    stub.answer("detach", {"changed": True, "detached": ["eth0"]})
    res = stub.run(check=True, state="absent")
    assert res["changed"] is True and res["detached"] == ["eth0"]
    assert [c[0] for c in stub.calls()] == ["status"]
    res = stub.run(state="absent", netns="blue")
    assert res["changed"] is True and res["detached"] == ["eth0"]
    assert stub.calls()[-1] == ["detach", "--json", "--netns", "blue"]
    stub.answer("detach", {"changed": False, "detached": []})
    stub.answer("status", {"failed": False, "exit_code": 0, "interfaces": []})
    assert stub.run(state="absent")["changed"] is False


def test_module_without_mplexctl(stub: Stub) -> None:
    missing = str(stub.root / "nowhere" / "mplexctl")
    res = stub.run(state="absent", bin=missing)
    assert res["changed"] is False and res["warnings"]
    res = stub.run(path="/etc/mplex/config.yaml", bin=missing)
    assert res["failed"] is True and "mplexctl not found" in res["msg"]


def counters_row(prog_id: int, rewrite: int, drop: int) -> dict[str, Any]:
    verdicts = {"rewrite": {"packets": rewrite}, "drop_unknown_tag": {"packets": drop}}
    return {"failed": False, "exit_code": 0, "interfaces": [
        {"interface": "eth0", "owner": "mplex", "prog_id": prog_id,
         "services": {"telemetry": {"verdicts": verdicts}}},
        {"interface": "eth1", "owner": "foreign", "prog_id": 9, "services": {}},
    ]}  # fmt: skip


def test_confirm_module_without_a_gate_confirms(stub: Stub) -> None:
    stub.answer("confirm", {"changed": True, "confirmed": [4], "generation": "g2", "message": "ok"})
    res = stub.run(module=CONFIRM_MODULE, netns="blue", expect_pending=True)
    assert res["changed"] is True and res["confirmed"] == [4] and not res["rolled_back"]
    assert stub.calls() == [["confirm", "--json", "--netns", "blue"]]
    stub.answer("confirm", {"changed": False, "confirmed": [], "message": "nothing to confirm: x"})
    res = stub.run(module=CONFIRM_MODULE, expect_pending=True)
    assert res["failed"] is True and "nothing to confirm: x" in res["msg"]
    assert stub.run(module=CONFIRM_MODULE)["changed"] is False  # nothing expected: fine


def test_confirm_module_gate_fails_and_rolls_back(stub: Stub) -> None:
    stub.answer("status", counters_row(7, rewrite=100, drop=10))
    stub.then("status", counters_row(7, rewrite=110, drop=100))  # +10 rewritten, +90 dropped
    stub.answer("rollback", {"changed": True, "rolled_back_to": {"seq": 1, "generation": "g1"}})
    health = {"observe": 0, "max_drop_ratio": 0.05, "min_packets": 50}
    res = stub.run(module=CONFIRM_MODULE, health=health)
    assert res["failed"] is True and res["rolled_back"] is True, res
    assert res["health"] == {
        "packets": 100, "dropped": 90, "ratio": 0.9, "observe": 0, "passed": False
    }  # fmt: skip
    assert "90 of 100 service packets dropped" in res["msg"] and "ratio 0.900 > " in res["msg"]
    assert "rolled back to generation g1" in res["msg"]
    assert [c[0] for c in stub.calls()] == ["status", "status", "rollback"]


def test_confirm_module_gate_passes(stub: Stub) -> None:
    # a new program (id 8) restarts the counters: its packets count from zero
    stub.answer("status", counters_row(7, rewrite=1000, drop=500))
    stub.then("status", counters_row(8, rewrite=98, drop=2))
    stub.answer("confirm", {"changed": True, "confirmed": [3], "generation": "g3", "message": "ok"})
    health = {"observe": 0, "max_drop_ratio": 0.05, "min_packets": 50}
    res = stub.run(module=CONFIRM_MODULE, health=health)
    assert res["changed"] is True and res["confirmed"] == [3], res
    assert res["health"]["ratio"] == 0.02 and res["health"]["passed"] is True
    # too few packets to judge: passes with a warning, even if all were dropped
    stub.answer("status", counters_row(8, rewrite=0, drop=0))
    stub.then("status", counters_row(8, rewrite=0, drop=10))
    res = stub.run(module=CONFIRM_MODULE, health=health)
    assert res["health"]["passed"] is True and "no traffic to judge" in json.dumps(res["warnings"])
