"""The CLI as a user runs it: exit codes, output, never a traceback."""

from __future__ import annotations

import json
import os
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
    doc = json.loads(r.stdout)
    assert doc["failed"] is True and doc["exit_code"] == 2
    assert doc["files"][0]["file"] == str(tmp_path / "nope.yaml")
    assert doc["files"][0]["valid"] is False
    (problem,) = doc["problems"]
    assert problem["file"] == str(tmp_path / "nope.yaml") and problem["line"] is None
    assert problem["message"] == "cannot read: No such file or directory"


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
    assert doc["changed"] is True and doc["plan"][0]["impact"].startswith("map update")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    assert mplexctl("diff", EXAMPLE, str(bad)).returncode == 2


def test_unknown_netns_is_a_host_error() -> None:
    r = mplexctl("status", "--netns", "mpx-does-not-exist-0", "--json")
    assert r.returncode == 3 and "does not exist" in r.stderr
    assert json.loads(r.stdout)["exit_code"] == 3


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_output_that_cannot_be_written_is_an_error(unbuffered: str) -> None:
    """A full disk under `status --prometheus > f.prom` must not look like success."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-m", "mplexctl", "schema"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "mplexctl:" in r.stderr


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_closed_pipe_exits_quietly_as_sigpipe(tmp_path: Path, unbuffered: str) -> None:
    big = tmp_path / "big.yaml"  # compile --json of 5,000 routes: far more than a pipe holds
    routes = "\n".join(f'      "hex:{i:06x}": {10000 + i}' for i in range(5000))
    big.write_text(
        Path(EXAMPLE).read_text().split("services:")[0]
        + "services:\n"
        + (
            "  - name: s\n    protocol: udp\n    port: 5000\n"
            "    payload_length: [{min: 290, max: 294}]\n    tag: {offset: 20, length: 3}\n"
            f"    routes:\n{routes}\n"
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    p = subprocess.Popen(
        [sys.executable, "-m", "mplexctl", "compile", "--json", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert p.stdout is not None and p.stderr is not None
    assert len(p.stdout.read(10)) == 10
    p.stdout.close()  # the reader goes away, as `mplexctl compile --json big.yaml | head -c 10`
    err = p.stderr.read().decode()
    # Buffered, the next write fails: 141. Unbuffered, the write the reader cut short returns
    # a partial count and there is no next write: 0. Never a message or a traceback.
    assert p.wait() == (0 if unbuffered else 141) and err == ""
