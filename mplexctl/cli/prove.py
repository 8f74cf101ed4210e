"""Verbs that prove a config before it carries traffic: `test` (the kernel) and `explain`
(the model). main.py lists their VERBS (cli/verb.py says how)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from mplexctl.cli.verb import Args, Report, Verb
from mplexctl.errors import UsageError

if TYPE_CHECKING:
    from mplexctl.contract.explain import Explanation
    from mplexctl.contract.replay import Row
    from mplexctl.engine.prove import ProveReport

EXIT_SOME_FAILED = 1


# --- test ---------------------------------------------------------------------------------------
def cmd_test(args: Args) -> Report:
    from mplexctl.engine.prove import prove_file

    report = prove_file(args.file)
    code = 0 if report.ok else EXIT_SOME_FAILED  # as diff's 1: an answer, not a failure
    if args.json:
        return Report(data=report.as_dict(), exit_code=code)
    return Report(text=test_text(report), exit_code=code)


def test_text(report: ProveReport) -> str:
    lines = []
    for r in report.results:
        where = f"{report.file}:{r.exp.line}: {r.exp.label}"
        model = "the model agrees" if r.agree else f"the model says {r.model}"
        if r.ok:
            lines.append(f"{where}: ok, {r.kernel} (kernel; {model})")
        else:
            lines.append(f"{where}: got {r.kernel}, expected {r.expected} (kernel; {model})")
    held = sum(r.ok for r in report.results)
    lines.append(
        f"{report.file}: {held} of {len(report.results)} expectation(s) hold in the kernel "
        f"(generation {report.generation}: loaded, tested, unloaded; never attached)"
    )
    return "\n".join(lines)


# --- explain ------------------------------------------------------------------------------------
def cmd_explain(args: Args) -> Report:
    from mplexctl.config import load_config

    if args.diff_live and not args.pcap:
        raise UsageError("--diff-live compares a replayed capture: use it with --pcap")
    # Expectations are not checked here: explain is how one finds out why one fails.
    config = load_config(args.file, expectations=False)
    if args.pcap:
        return _replay(args, config)
    from mplexctl.contract.explain import explain

    if args.packet is not None:
        from mplexctl.config.expect import packet_from_spec
        from mplexctl.contract.packet import build_frame

        frame = build_frame(config, packet_from_spec(args.packet, config)).frame
    else:
        frame = _hex_frame(args.frame)
    result = explain(config, frame)
    return Report(data=result.as_dict()) if args.json else Report(text=explain_text(result))


def _hex_frame(text: str) -> bytes:
    digits = "".join(text.split()).replace(":", "").replace("-", "")
    digits = digits.removeprefix("0x").removeprefix("hex:")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise UsageError("--frame: not hex digits (e.g. 020000000001...)") from None


def explain_text(e: Explanation) -> str:
    width = len(str(len(e.steps)))
    lines = [f"frame of {len(e.frame)} bytes:"]
    lines += [f"  {i:>{width}}. {step}" for i, step in enumerate(e.steps, 1)]
    return "\n".join(lines)


def _replay(args: Args, config: Any) -> Report:
    from mplexctl.contract.replay import read_capture, replay

    capture = read_capture(args.pcap)
    rows = replay(config, capture.frames)
    live = where = None
    if args.diff_live:
        from mplexctl.engine.prove import live_config

        live_cfg, where = live_config()
        live = replay(live_cfg, capture.frames)
    keys = sorted(rows.keys() | (live.keys() if live else set()), key=_row_order)
    if args.json:
        table = []
        for k in keys:
            row: dict[str, Any] = {"service": k[0], "verdict": k[1], "port": k[2]}
            row["packets"] = rows.get(k, 0)
            if live is not None:
                row["live_packets"] = live.get(k, 0)
            table.append(row)
        doc = {"file": args.file, "capture": args.pcap, "frames": len(capture.frames)}
        doc |= {"truncated": capture.truncated, "rows": table}
        if where is not None:
            doc["live"] = where
        return Report(data=doc)
    head = f"{args.pcap}: {len(capture.frames)} frame(s) replayed against {args.file}"
    if capture.truncated:
        head += f" ({capture.truncated} cut short by the capture, replayed as captured)"
    out = [head]
    if where is not None:
        out.append(f"live: {where}")
    cols = ["service", "verdict", "port", "packets"] + (["live", "change"] if live else [])
    cells = []
    for k in keys:
        line = [k[0] or "-", k[1], "-" if k[2] is None else str(k[2]), str(rows.get(k, 0))]
        if live is not None:
            delta = rows.get(k, 0) - live.get(k, 0)
            line += [str(live.get(k, 0)), f"{delta:+d}" if delta else ""]
        cells.append(line)
    widths = [max(len(c[i]) for c in [cols, *cells]) for i in range(len(cols))]
    for line in [cols, *cells]:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return Report(text="\n".join(out))


def _row_order(k: Row) -> tuple[str, str, int]:
    return (k[0] or "~", k[1], k[2] or 0)


# --- registration -------------------------------------------------------------------------------
def _test_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")


def _explain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--packet",
        metavar="SPEC",
        help="key=value,... with the keys of an expectation's packet "
        "(protocol=udp,port=5000,length=292,tag=600; vlan=100/200)",
    )
    what.add_argument("--frame", metavar="HEX", help="a whole Ethernet frame in hex")
    what.add_argument(
        "--pcap",
        metavar="CAPTURE",
        help="replay a pcap/pcapng capture: counts per service, verdict, port",
    )
    p.add_argument(
        "--diff-live",
        action="store_true",
        help="with --pcap: the live configuration's counts side by side (root)",
    )


VERBS = (
    Verb(
        "test",
        "run FILE's expectations in the kernel, never attached "
        "(exit 0 all hold, 1 some failed, 2 invalid file)",
        cmd_test,
        _test_args,
    ),
    Verb(
        "explain",
        "the path a packet takes through FILE's contract, step by step",
        cmd_explain,
        _explain_args,
        netns=True,  # --diff-live reads the live configuration of a namespace
    ),
)
