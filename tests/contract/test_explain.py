"""`mplexctl explain`: a frame's path step by step, agreeing with the model; capture replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mplexctl.config import parse_config
from mplexctl.config.expect import packet_from_spec
from mplexctl.contract.explain import explain
from mplexctl.contract.model import run_model
from mplexctl.contract.packet import build_frame
from mplexctl.contract.replay import read_capture, replay
from mplexctl.errors import UsageError
from tests.dataplane.configs import CONFIGS, load
from tests.dataplane.frames import FrameGen, seed_for

from .samples import EVERY_VERDICT, config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "configs" / "example.yaml")
# The differential suite's corpus: its sweeps plus as many random frames (same seeds).
FRAMES_PER_CONFIG = int(os.environ.get("MPLEX_DIFF_FRAMES", "12000"))


def mplexctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mplexctl", *args], capture_output=True, text=True, cwd=ROOT
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_explain_agrees_with_the_model_on_the_differential_corpus(name: str) -> None:
    cfg = load(name)
    seen: Counter[str] = Counter()
    for case in FrameGen(cfg, seed_for(name)).cases(FRAMES_PER_CONFIG):
        model = run_model(cfg, case.frame)
        e = explain(cfg, case.frame)
        assert (e.verdict, e.service, e.action, e.output) == (
            model.verdict or "pass",
            model.service,
            model.action,
            model.frame,
        ), case.label
        if model.verdict == "rewrite":
            assert e.port is not None and e.port.to_bytes(2, "big") in model.frame
        else:
            assert e.port is None
        assert e.steps and e.steps[-1].startswith(f"verdict: {e.verdict} ("), e.steps
        seen[e.verdict] += 1
    assert len(seen) >= 4, seen  # the corpus reaches most verdicts in every config


def test_explain_steps_of_a_rewrite() -> None:
    cfg = parse_config(config(EVERY_VERDICT))
    e = explain(
        cfg,
        build_frame(cfg, packet_from_spec("protocol=udp,port=5000,length=292,tag=601", cfg)).frame,
    )
    assert (e.verdict, e.service, e.port) == ("rewrite", "telemetry", 5002)
    text = "\n".join(e.steps)
    for words in (
        "ethertype 0x0800",
        "ipv4: header 20 bytes",
        "destination port 5000",
        "service: telemetry (udp/5000)",
        "payload length 292: inside window 290..294",
        "363031 ('601')",
        "route: tag 601 -> port 5002",
        "destination port 5000 -> 5002; udp checksum 0x",
        "verdict: rewrite (XDP_PASS)",
    ):
        assert words in text, text


def test_explain_steps_name_vlans_extension_headers_and_why_no_service() -> None:
    cfg = parse_config(config(EVERY_VERDICT))
    spec = "protocol=udp,port=5000,length=292,tag=600,ip=6,vlan=10/20,fragment=first"
    e = explain(cfg, build_frame(cfg, packet_from_spec(spec, cfg)).frame)
    text = "\n".join(e.steps)
    assert "vlan: id 10 (tpid 0x88a8)" in text and "vlan: id 20 (tpid 0x8100)" in text
    assert "extension header fragment" in text and e.verdict == "drop_fragment"
    other = explain(
        cfg, build_frame(cfg, packet_from_spec("protocol=tcp,port=22,length=1", cfg)).frame
    )
    assert (other.verdict, other.service, other.port) == ("pass", None, None)
    assert "none listens on tcp/22" in "\n".join(other.steps)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("protocol=udp,port=5000,length=292,tag=6000", "tag.length is 3"),
        ("protocol=udp,port=5000", "missing required key 'length'"),
        ("protocol=udp,port=5000,length=1,colour=red", "unknown key 'colour'"),
        ("protocol=udp,port=5000,length", "is not key=value"),
        ("protocol=udp,port=5000,port=1,length=1", "given twice"),
    ],
)
def test_packet_spec_problems(spec: str, words: str) -> None:
    cfg = parse_config(config(EVERY_VERDICT))
    with pytest.raises(UsageError) as exc:
        packet_from_spec(spec, cfg)
    assert words in str(exc.value)


def test_explain_cli_json_contract() -> None:
    r = mplexctl(
        "explain", EXAMPLE, "--packet", "protocol=udp,port=5000,length=292,tag=600", "--json"
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["verdict"], doc["service"], doc["port"]) == ("rewrite", "telemetry", 5001)
    assert isinstance(doc["steps"], list) and all(isinstance(s, str) for s in doc["steps"])
    frame = doc["frame"]
    again = json.loads(mplexctl("explain", EXAMPLE, "--frame", frame, "--json").stdout)
    assert again == doc
    short = json.loads(mplexctl("explain", EXAMPLE, "--frame", frame[:60], "--json").stdout)
    assert (short["verdict"], short["service"], short["port"]) == ("pass", None, None)
    text = mplexctl("explain", EXAMPLE, "--packet", "protocol=udp,port=5000,length=100")
    assert text.returncode == 0 and "verdict: drop_length (XDP_DROP)" in text.stdout


def test_explain_cli_usage_errors() -> None:
    for args in (
        ["--packet", "protocol=udp"],
        ["--frame", "zz"],
        ["--packet", "protocol=udp,port=5000,length=1", "--diff-live"],
        [],
    ):
        r = mplexctl("explain", EXAMPLE, *args)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr


def _capture(tmp_path: Path, frames: list[bytes], ng: bool) -> Path:
    from scapy.utils import PcapNgWriter, RawPcapWriter

    path = tmp_path / ("c.pcapng" if ng else "c.pcap")
    if ng:
        from scapy.layers.l2 import Ether

        w = PcapNgWriter(str(path))
        for f in frames:
            w.write(Ether(f))
    else:
        w = RawPcapWriter(str(path), linktype=1)
        for f in frames:
            w.write(f)
    w.close()
    return path


@pytest.mark.parametrize("ng", [False, True], ids=["pcap", "pcapng"])
def test_pcap_replay_counts_per_service_verdict_and_port(tmp_path: Path, ng: bool) -> None:
    cfg = parse_config(config(EVERY_VERDICT))
    frames = [build_frame(cfg, e.packet).frame for e in cfg.expectations] * 3
    path = _capture(tmp_path, frames, ng)
    capture = read_capture(str(path))
    assert capture.frames == frames
    rows = replay(cfg, capture.frames)
    assert rows[("telemetry", "rewrite", 5001)] == 3
    assert rows[("control", "rewrite", 6001)] == 3
    assert rows[(None, "pass", None)] == 6  # tcp/22, and the later fragment
    assert sum(rows.values()) == len(frames)
    src = tmp_path / "f.yaml"
    src.write_text(config(EVERY_VERDICT))
    r = mplexctl("explain", str(src), "--pcap", str(path), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["frames"] == len(frames)
    table = {(x["service"], x["verdict"], x["port"]): x["packets"] for x in doc["rows"]}
    assert table == dict(rows)
    text = mplexctl("explain", str(src), "--pcap", str(path)).stdout
    assert "telemetry" in text and "drop_fragment" in text


def test_pcap_problems_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_text("not a capture\n")
    for path in (junk, tmp_path / "missing.pcap"):
        r = mplexctl("explain", EXAMPLE, "--pcap", str(path))
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert str(path) in r.stderr
