"""The role's mplex_tc_attach: MPLEXCTL_TC_ATTACH for the apply and the health gate's
rollback now, and in the boot unit (a re-apply after a reboot attaches the same way)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from mplexctl.backend import tchook

ROLE = Path(__file__).resolve().parents[2] / "roles" / "mplex"


def _unit(tmp_path: Path, choice: str | None) -> str:
    """The boot unit as Ansible's template module renders it (trim_blocks)."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True)
    env.filters["bool"] = bool  # Ansible's filter (only ever given a bool here)
    text = (ROLE / "templates" / "mplex.service.j2").read_text()
    extra = {} if choice is None else {"mplex_tc_attach": choice}
    return env.from_string(text).render(
        mplex_config_path=str(tmp_path / "config.yaml"),
        mplex_netns="",
        mplex_bin=sys.executable,
        mplex_force=False,
        **extra,
    )


@pytest.mark.parametrize(("choice", "line"), [("clsact", True), ("tcx", True), ("auto", False)])
def test_boot_unit_carries_the_setting(tmp_path: Path, choice: str, line: bool) -> None:
    text = _unit(tmp_path, choice)
    env_lines = [ln for ln in text.splitlines() if ln.startswith("Environment=")]
    assert env_lines == ([f"Environment={tchook.ENV}={choice}"] if line else []), text
    assert _unit(tmp_path, None) == _unit(tmp_path, "auto")
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (it checks the boot unit)")
    unit = tmp_path / "mplex.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def test_apply_and_health_gate_get_the_setting() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "present.yml").read_text())
    by_module = {
        next(k for k in t if k.startswith("mplex_")): t
        for t in tasks
        if any(k.startswith("mplex_") for k in t)
    }
    for module in ("mplex_apply", "mplex_confirm"):
        assert by_module[module]["environment"] == {tchook.ENV: "{{ mplex_tc_attach }}"}
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["mplex_tc_attach"] == "auto"
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    option = spec["argument_specs"]["main"]["options"]["mplex_tc_attach"]
    assert tuple(option["choices"]) == tchook.CHOICES and option["default"] == "auto"
