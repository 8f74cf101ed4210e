"""The CLI as a user runs it: exit codes, output, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "configs" / "example.yaml")
VERBS = ["validate", "compile", "schema", "apply", "diff", "status", "detach"]


def mplexctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mplexctl", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_validate_examples() -> None:
    configs = sorted(str(p) for p in (ROOT / "configs").glob("*.yaml"))
    r = mplexctl("validate", *configs)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(": valid") == len(configs)


def test_invalid_config_exit_2_with_file_line_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(EXAMPLE).read_text().replace('"601": 5002', "601: 5002"))
    r = mplexctl("validate", str(bad))
    assert r.returncode == 2
    line = next(i for i, ln in enumerate(bad.read_text().splitlines(), 1) if "601:" in ln)
    assert f'{bad}:{line}: services[0].routes."601": tag 601 must be quoted' in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_json_and_missing_file(tmp_path: Path) -> None:
    r = mplexctl("validate", "--json", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert json.loads(r.stdout)[str(tmp_path / "nope.yaml")]["valid"] is False


def test_compile_is_byte_identical_across_runs() -> None:
    outs = {mplexctl("compile", "--emit", EXAMPLE).stdout for _ in range(2)}
    outs |= {mplexctl("compile", "--emit", EXAMPLE).stdout}
    assert len(outs) == 1
    (source,) = outs
    assert "int mplex_xdp(struct xdp_md *ctx)" in source and '#include "' not in source


def test_compile_json_and_out(tmp_path: Path) -> None:
    doc = json.loads(mplexctl("compile", "--json", EXAMPLE).stdout)
    assert doc["defines"]["MPLEX_NSERVICES"] == "2"
    assert len(doc["maps"]["mplex_routes"]) == 6
    r = mplexctl("compile", "--out", str(tmp_path / "o"), EXAMPLE)
    assert r.returncode == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "maps.json",
        "mplex.c",
        "mplex_config.h",
    ]
    assert (tmp_path / "o" / "mplex_config.h").read_text() == doc["header"]


def test_schema_is_draft_2020_12_and_accepts_examples() -> None:
    schema = json.loads(mplexctl("schema").stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(yaml.safe_load(Path(EXAMPLE).read_text()), schema)


@pytest.mark.parametrize("verb", VERBS)
def test_help_on_every_verb(verb: str) -> None:
    r = mplexctl(verb, "--help")
    assert r.returncode == 0 and "usage: mplexctl " + verb in r.stdout


def test_version() -> None:
    assert mplexctl("--version").stdout.startswith("mplexctl 0.")


def test_diff_two_files(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(Path(EXAMPLE).read_text().replace('"601": 5002', '"601": 5009', 1))
    same = mplexctl("diff", EXAMPLE, EXAMPLE)
    assert same.returncode == 0 and same.stdout.strip() == "no changes"
    r = mplexctl("diff", EXAMPLE, str(new))
    assert r.returncode == 1
    assert 'service telemetry: route "601": 5002 -> 5009' in r.stdout
    doc = json.loads(mplexctl("diff", "--json", EXAMPLE, str(new)).stdout)
    assert doc["different"] is True and doc["plan"][0]["impact"].startswith("map update")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    assert mplexctl("diff", EXAMPLE, str(bad)).returncode == 2


def test_unknown_netns_is_a_host_error() -> None:
    r = mplexctl("status", "--netns", "mpx-does-not-exist-0", "--json")
    assert r.returncode == 3 and "does not exist" in r.stderr
    assert json.loads(r.stdout)["exit_code"] == 3
