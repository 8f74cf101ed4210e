"""Every verb's --json document is the one the README describes (docs/json-output.schema.json).
Verbs that need a kernel are checked in test_cli_kernel.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from mplexctl.cli.main import VERBS
from tests.cli.jsondoc import ROOT, check, schema

pytestmark = pytest.mark.unit
EXAMPLE = str(ROOT / "configs" / "example.yaml")


def mplexctl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mplexctl", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        input=stdin,
    )


def readme_keys() -> dict[str, list[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### --json output\n", 1)[1].split("\n### ", 1)[0]
    out = {}
    for line in section.splitlines():
        m = re.fullmatch(r"\| (\w+) \| (.*) \|", line)
        if not m or m.group(1) == "verb":
            continue
        cell = m.group(2)
        while re.search(r"\([^()]*\)", cell):
            cell = re.sub(r"\([^()]*\)", "", cell)
        out[m.group(1)] = re.findall(r"`(\w+)`", cell)
    return out


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_readme_table_names_every_json_verb_with_the_schema_keys() -> None:
    table = readme_keys()
    json_verbs = [v.name for v in VERBS if v.json]
    assert sorted(table) == sorted(json_verbs)
    for verb in json_verbs:
        definition = schema()["$defs"][verb]
        keys = set(definition.get("required", []))
        for branch in definition.get("anyOf", []):  # several shapes (explain --pcap)
            keys |= set(branch["required"]) | set(branch["properties"])
        assert sorted(table[verb]) == sorted(keys), verb


def test_validate_documents(tmp_path: Path) -> None:
    doc = check(mplexctl("validate", "--json", EXAMPLE).stdout, "validate", 0)
    assert doc["failed"] is False and doc["files"][0]["valid"] is True
    (warning,) = doc["files"][0]["warnings"]  # the example's tcp service
    assert warning["path"] == "services[1].protocol" and warning["line"] > 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(EXAMPLE).read_text().replace("port: 5000", "port: 70000", 1))
    r = mplexctl("--json", "validate", EXAMPLE, str(bad))
    doc = check(r.stdout, "validate", 2)
    assert doc["failed"] is True and [f["valid"] for f in doc["files"]] == [True, False]
    problem = doc["problems"][0]  # (the example's expectations then name udp/5000 too)
    assert problem["file"] == str(bad) and problem["path"] == "services[0].port"
    assert isinstance(problem["line"], int) and "70000" in problem["message"]
    assert doc["files"][1]["problems"] == doc["problems"]
    doc = check(mplexctl("validate", "--json", "-", stdin="version: 2\n").stdout, "validate", 2)
    assert doc["problems"][0]["file"] == "<stdin>"


def test_compile_documents(tmp_path: Path) -> None:
    doc = check(mplexctl("compile", "--json", EXAMPLE).stdout, "compile", 0)
    svc = doc["maps"]["mplex_svcs"][0]
    assert svc["windows"] == [{"min": 290, "max": 294}] and svc["tag"] == {
        "offset": 20,
        "length": 3,
    }
    assert doc["files"] == []
    out = tmp_path / "o"
    doc = check(mplexctl("compile", "--json", "--out", str(out), EXAMPLE).stdout, "compile", 0)
    assert sorted(Path(f).name for f in doc["files"]) == ["maps.json", "mplex.c", "mplex_config.h"]


def test_diff_of_two_files_documents(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(Path(EXAMPLE).read_text().replace('"601": 5002', '"601": 5009', 1))
    doc = check(mplexctl("diff", "--json", EXAMPLE, EXAMPLE).stdout, "diff", 0)
    assert doc["changed"] is False and doc["plan"] == []
    doc = check(mplexctl("diff", "--json", EXAMPLE, str(new)).stdout, "diff", 1)
    assert doc["changed"] is True and doc["failed"] is False
    assert doc["plan"][0]["action"] == "route" and doc["plan"][0]["service"] == "telemetry"


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["diff", "--json", EXAMPLE, "/nonexistent/new.yaml"], 2),
        (["status", "--json", "--netns", "mpx-no-such-netns-0"], 3),
        (["--json", "apply", "--netns", "mpx-no-such-netns-0", EXAMPLE], 3),
        (["compile", "--json", "--emit", EXAMPLE], 2),
        (["--json", "status", "--prometheus"], 2),
        (["validate", "--json", "--netns", "x", EXAMPLE], 2),
    ],
)
def test_failure_documents(argv: list[str], code: int) -> None:
    r = mplexctl(*argv)
    assert r.returncode == code, r.stderr
    doc = check(r.stdout, "failure", code)
    assert doc["msg"] and doc["msg"] in r.stderr


def test_invalid_file_failure_lists_problems_as_objects(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    r = mplexctl("diff", "--json", str(bad), EXAMPLE)
    doc = check(r.stdout, "failure", 2)
    assert doc["problems"] and all(p["file"] == str(bad) for p in doc["problems"])
    assert {p["path"] for p in doc["problems"]} >= {"version"}


def test_explain_document() -> None:
    spec = "protocol=udp,port=5000,length=292,tag=600"
    doc = check(mplexctl("explain", "--json", EXAMPLE, "--packet", spec).stdout, "explain", 0)
    assert doc["verdict"] == "rewrite" and doc["port"] == 5001 and doc["steps"]
