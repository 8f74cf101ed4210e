"""Text, JSON and Prometheus renderings of what the library returns."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mplexctl import constants as C
from mplexctl.errors import Problem

if TYPE_CHECKING:  # imported by the verbs that use them (start-up time counts: see README)
    from mplexctl.compiler.build import Build
    from mplexctl.engine.plan import Plan
    from mplexctl.engine.status import InterfaceStatus


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


def document(
    failed: bool,
    exit_code: int,
    *,
    msg: str = "",
    problems: Sequence[Problem] = (),
    data: dict[str, Any] | None = None,
) -> str:
    """The one --json shape (README: "--json output"): an object with `failed` and
    `exit_code` (the process's exit status); when failed, `msg` and `problems`; then the
    verb's own keys."""
    doc: dict[str, Any] = {"failed": failed, "exit_code": exit_code}
    if failed:
        doc["msg"] = msg
        doc["problems"] = [p.as_dict() for p in problems]
    doc.update(data or {})
    return to_json(doc)


def plan_text(p: Plan) -> str:
    notes = [f"note: {n}" for n in p.notes]
    if p.empty:
        return "\n".join(["no changes", *notes])
    lines = [f"  {c.interface}: [{c.impact}] {c.detail}" for c in p.changes]
    head = f"plan ({len(p.changes)} change(s), generation {p.generation}):"
    return "\n".join([head, *lines, *notes])


def _windows(windows: list[dict[str, int]]) -> str:
    return ", ".join(f"{w['min']}..{w['max']}" for w in windows)


def maps_text(build: Build) -> str:
    maps = build.maps_readable()
    out = [
        f"/* generation {build.generation}  digest {build.digest} */",
        "",
        build.header,
        f"/* map {C.MAP_SERVICES}: live row = MPLEX_SVC_ROW(svc, {C.MAP_ACTIVE}[svc]) = "
        f"{C.ENCODINGS['SVC_ROW'][1]} */",
    ]
    for s in maps[C.MAP_SERVICES]:
        out.append(
            f"/*   [{s['index']}] {s['name']} {s['protocol']}/{s['port']} windows "
            f"{_windows(s['windows'])} tag {s['tag']['offset']}+{s['tag']['length']} "
            f"unmatched {s['unmatched']}: {s['value']} */"
        )
    out.append(f"/* map {C.MAP_ROUTES} ({len(maps[C.MAP_ROUTES])} entries, key -> value) */")
    for r in maps[C.MAP_ROUTES]:
        out.append(
            f'/*   {r["service"]} "{r["tag"]}" -> {r["port"]}: {r["key"]} -> {r["value"]} */'
        )
    return "\n".join(out) + "\n"


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ns / 1e9)) if ns else "-"


def status_text(rows: list[InterfaceStatus]) -> str:
    if not rows:
        return "no XDP programs attached"
    out = []
    for r in rows:
        if r.owner != "mplex":
            what = (
                "no XDP program"
                if r.owner == "none"
                else (f"foreign XDP program {r.prog_name!r} (id {r.prog_id}), not mplex's")
            )
            out.append(f"{r.name}: {what}")
            continue
        out.append(
            f"{r.name}: mplex program id {r.prog_id}, {r.mode} mode"
            f"{f' ({r.via})' if r.via else ''}, generation "
            f"{r.generation}, applied {_when(r.applied_ns)}"
        )
        for s in r.services:
            t = s.total
            out.append(
                f"  service {s.name} ({s.protocol}/{s.port}): {t.packets} packets, {t.bytes} bytes"
            )
            for v, c in s.verdicts.items():
                if c.packets:
                    out.append(f"    {v:<17} {c.packets:>12} packets {c.bytes:>14} bytes")
            for tag, (port, c) in s.routes.items():
                out.append(f'    route "{tag}" -> {port}: {c.packets} packets, {c.bytes} bytes')
            if s.replies is not None:
                out.append(
                    f"    replies restored: {s.replies.packets} packets, {s.replies.bytes} bytes"
                )
    return "\n".join(out)


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def status_prometheus(rows: list[InterfaceStatus]) -> str:
    """Text exposition format, for node_exporter's textfile collector."""
    out = [
        "# HELP mplex_info mplex program attached to an interface (value 1).",
        "# TYPE mplex_info gauge",
    ]
    mplex = [r for r in rows if r.owner == "mplex"]
    for r in mplex:
        out.append(
            f'mplex_info{{interface="{_label(r.name)}",prog_id="{r.prog_id}",'
            f'mode="{r.mode}",generation="{r.generation}"}} 1'
        )
    out += [
        "# HELP mplex_applied_timestamp_seconds When the running generation was applied.",
        "# TYPE mplex_applied_timestamp_seconds gauge",
    ]
    for r in mplex:
        out.append(
            f'mplex_applied_timestamp_seconds{{interface="{_label(r.name)}"}} '
            f"{r.applied_ns / 1e9:.3f}"
        )
    for unit in ("packets", "bytes"):
        out += [
            f"# HELP mplex_service_{unit}_total Service packets by verdict ({unit}).",
            f"# TYPE mplex_service_{unit}_total counter",
        ]
        for r in mplex:
            for s in r.services:
                for v, c in s.verdicts.items():
                    out.append(
                        f'mplex_service_{unit}_total{{interface="{_label(r.name)}",'
                        f'service="{s.name}",verdict="{v}"}} {getattr(c, unit)}'
                    )
        out += [
            f"# HELP mplex_route_{unit}_total Rewritten packets per route ({unit}).",
            f"# TYPE mplex_route_{unit}_total counter",
        ]
        for r in mplex:
            for s in r.services:
                for tag, (port, c) in s.routes.items():
                    out.append(
                        f'mplex_route_{unit}_total{{interface="{_label(r.name)}",'
                        f'service="{s.name}",tag="{_label(tag)}",port="{port}"}} '
                        f"{getattr(c, unit)}"
                    )
        out += [
            f"# HELP mplex_replies_restored_{unit}_total Replies restored (reply: restore).",
            f"# TYPE mplex_replies_restored_{unit}_total counter",
        ]
        for r in mplex:
            for s in r.services:
                if s.replies is not None:
                    out.append(
                        f'mplex_replies_restored_{unit}_total{{interface="{_label(r.name)}",'
                        f'service="{s.name}"}} {getattr(s.replies, unit)}'
                    )
    return "\n".join(out) + "\n"
