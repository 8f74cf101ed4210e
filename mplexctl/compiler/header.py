"""Render C text from mplexctl.constants: the shared header and the per-config header."""

from __future__ import annotations

import re

from mplexctl import constants as C

COMMON_GUARD = "MPLEX_COMMON_H"


def _struct(name: str, layout: C.Layout, extra: str = "") -> str:
    lines = [f"struct {name} {{"]
    for ctype, field, count in layout:
        suffix = f"[{count}]" if count > 1 else ""
        lines.append(f"\t{ctype} {field}{suffix};")
    if extra:
        lines.append(f"\t{extra}")
    lines.append("};")
    return "\n".join(lines)


def c_macro(name: str, enc: C.Encoding) -> str:
    """`#define MPLEX_NAME(a, b) (expr)`, every parameter parenthesized."""
    params, expr = enc
    body = re.sub(r"\b(" + "|".join(params) + r")\b", r"(\1)", expr)
    return f"#define MPLEX_{name}({', '.join(params)}) ({body})"


def render_common_header() -> str:
    """Text of bpf/mplex_common.h: every name the C program shares with Python."""
    out = [
        "/* SPDX-License-Identifier: GPL-2.0 */",
        "/* Generated from mplexctl/constants.py by `make header`: do not edit by hand. */",
        f"#ifndef {COMMON_GUARD}",
        f"#define {COMMON_GUARD}",
        "",
        f"#define MPLEX_MAGIC 0x{C.MAGIC:016x}ULL",
        f"#define MPLEX_TAG_MAX_LEN {C.TAG_MAX_LEN}",
        f"#define MPLEX_MAX_VLAN_TAGS {C.MAX_VLAN_TAGS}",
        f"#define MPLEX_MAX_IPV6_EXT_HEADERS {C.MAX_IPV6_EXT_HEADERS}",
        f"#define MPLEX_PROTO_TCP {C.PROTO_NUMBERS['tcp']}",
        f"#define MPLEX_PROTO_UDP {C.PROTO_NUMBERS['udp']}",
        f"#define MPLEX_SVC_F_VALID {C.SVC_F_VALID}",
        f"#define MPLEX_SVC_F_PASS_UNMATCHED {C.SVC_F_PASS_UNMATCHED}",
        f"#define MPLEX_SVC_F_RESTORE {C.SVC_F_RESTORE}",
        f"#define MPLEX_IFINDEX_DIRECT {C.IFINDEX_DIRECT}",
        f"#define MPLEX_IF_SLOT_NONE {C.IF_SLOT_NONE}",
        f"#define MPLEX_ROUTE_PROBES_MAX {C.ROUTE_PROBES_MAX}",
        f"#define MPLEX_ROUTE_KEY_EMPTY {C.ROUTE_KEY_EMPTY}",
        f"#define MPLEX_ROUTE_KEY_TOMBSTONE 0x{C.ROUTE_KEY_TOMBSTONE:X}",
        f"#define MPLEX_ROUTE_HASH_MUL 0x{C.ROUTE_HASH_MUL:016X}ULL",
        f"#define MPLEX_ROUTE_HASH_SHIFT {C.ROUTE_HASH_SHIFT}",
        f"#define MPLEX_SLOT_KEY_SHIFT {C.SLOT_KEY_SHIFT}",
        f"#define MPLEX_SLOT_CTR_SHIFT {C.SLOT_CTR_SHIFT}",
        "#define MPLEX_SLOT_KEY_MASK 0xFFFF",
        "#define MPLEX_SLOT_PORT_MASK 0xFFFF",
        f"#define MPLEX_TC_ACT_UNSPEC ({C.TC_ACT_UNSPEC})",
        f"#define MPLEX_TC_ACT_SHOT {C.TC_ACT_SHOT}",
        f"#define MPLEX_FLOW_ADDR_LEN {C.FLOW_ADDR_LEN}",
        f"#define MPLEX_FLOW_IPV4 {C.FLOW_IPV4}",
        f"#define MPLEX_FLOW_IPV6 {C.FLOW_IPV6}",
        "",
        "/* Encodings of map indexes and keys (constants.ENCODINGS). */",
        *(c_macro(name, enc) for name, enc in C.ENCODINGS.items()),
        "",
        "/* Verdicts counted per service: row MPLEX_NVERDICTS wide in mplex_svc_stats. */",
    ]
    out += [f"#define MPLEX_V_{name.upper()} {i}" for i, name in enumerate(C.VERDICTS)]
    out += [f"#define MPLEX_NVERDICTS {len(C.VERDICTS)}", ""]
    out += [
        _struct("mplex_window", C.LAYOUT_WINDOW),
        "",
        _struct("mplex_svc", C.LAYOUT_SVC_HEAD, "struct mplex_window win[MPLEX_MAX_WINDOWS];"),
        "",
        _struct("mplex_route_key", C.LAYOUT_ROUTE_KEY),
        "",
        _struct("mplex_route", C.LAYOUT_ROUTE),
        "",
        _struct("mplex_route_slot", C.LAYOUT_ROUTE_SLOT),
        "",
        _struct("mplex_counter", C.LAYOUT_COUNTER),
        "",
        _struct("mplex_flow_key", C.LAYOUT_FLOW_KEY),
        "",
        _struct("mplex_flow", C.LAYOUT_FLOW),
        "",
        _struct("mplex_svc_info", C.LAYOUT_SVC_INFO),
        "",
        _struct("mplex_meta", C.LAYOUT_META),
        "",
        f"#endif /* {COMMON_GUARD} */",
        "",
    ]
    return "\n".join(out)
