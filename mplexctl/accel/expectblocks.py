"""Accelerator for loading `expect:`: a list of expectations read by a regex, not as YAML nodes.

1,000 expectations are ~12,000 YAML nodes: composing and walking them takes longer than
everything else `validate` does with them. The lane accepts the top-level `expect:` block only
when every line of it has one narrow form whose YAML meaning is plain:

    - name: NAME                    (an item's first key on its dash line, any of the four)
      packet: {KEY: VALUE, ...}     (one line; VALUE an integer, a word, "text" or [1, 2])
      verdict: WORD
      port: INTEGER

(NAME a plain text starting with a letter, or "text"; integers decimal without sign, leading
zero or underscore; words lower case; no YAML boolean or null word anywhere; no key twice;
blank and comment lines anywhere.) It then blanks the block (line numbers stay put), gives
`expect:` a sentinel value, and the rest is loaded as usual; `place` puts the items where the
sentinel landed. Anything else -- another form, a tab, a second `expect:` line, a sentinel not
exactly at the top-level `expect` key on its line -- and the whole text takes the ordinary
path: the lane changes the speed of loading, never its result (tests/accel/test_expectblocks).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mplexctl import accel
from mplexctl.config.yamlsrc import Located, Path, YamlSyntaxError

SENTINEL = "mplexctl-expect-block"
_ODD_BREAKS = ("\r", "\x85", "\u2028", "\u2029", "\t")
# What YAML's reader refuses (as PyYAML's Reader.NON_PRINTABLE): comments are dropped here.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_HEADER = re.compile(r"^expect:(?:[ ]+#[^\n]*|[ ]*)\n", re.M)
_BODY_END = re.compile(r"^(?=[^ \n#])", re.M)  # the first line at column 0 holding something
_SKIP = re.compile(r" *(?:#[^\n]*)?")
# YAML 1.1 (PyYAML's resolver) reads these plain words as booleans or null, not as text.
_SPECIAL = {
    w
    for word in ("yes", "no", "true", "false", "on", "off", "null")
    for w in (word, word.capitalize(), word.upper())
}
_INT = r"0|[1-9][0-9]{0,5}"
_WORD = r"[a-z_][a-z0-9_]*"
_QUOTED = r'"[ !#-\[\]-~]*"'  # printable ASCII, no backslash or double quote
_NAME = r"[A-Za-z](?:[A-Za-z0-9 _.,()/'+=-]*[A-Za-z0-9_.)'])?"
_TAIL = r"(?:[ ]+#[^\n]*|[ ]*)$"
_LINE = re.compile(
    rf"( *)(- +)?(name|verdict|port|packet): ({_QUOTED}|{_NAME}|{_INT}|\{{[^\n]*?\}}){_TAIL}"
)
_VALUE = rf"(?:{_INT}|{_WORD}|{_QUOTED}|\[ *(?:(?:{_INT}) *(?:, *(?:{_INT}) *)*)?\])"
_FLOW = re.compile(rf"\{{ *(?:{_WORD}: +{_VALUE} *(?:, *{_WORD}: +{_VALUE} *)*)?\}}")
_PAIR = re.compile(rf"({_WORD}): +({_VALUE})")
_KEY_VALUE = {
    "name": re.compile(f"{_QUOTED}|{_NAME}"),
    "verdict": re.compile(_WORD),
    "port": re.compile(_INT),
    "packet": _FLOW,
}


@dataclass
class Lane:
    skeleton: str  # the text with the block blanked and a sentinel as the value of expect:
    header_line: int
    items: list[dict[str, Any]]
    lines: dict[Path, int] = field(default_factory=dict)
    key_lines: dict[Path, int] = field(default_factory=dict)


def _scalar(text: str) -> Any:
    if text[0] == '"':
        return text[1:-1]
    if text[0].isdigit():
        return int(text)
    return text


def _pairs(text: str, at: Path, line: int, lane: Lane) -> dict[str, Any] | None:
    """The mapping of a flow mapping _FLOW matched (None: a form the lane leaves to YAML)."""
    out: dict[str, Any] = {}
    for key, raw in _PAIR.findall(text):
        if key in out or key in _SPECIAL:
            return None
        if raw[0] == "[":
            inner = raw[1:-1].strip()
            value: Any = [int(v) for v in inner.split(",")] if inner else []
            for j in range(len(value)):
                lane.lines[(*at, key, j)] = line
        elif raw in _SPECIAL:
            return None
        else:
            value = _scalar(raw)
        out[key] = value
        lane.key_lines[(*at, key)] = lane.lines[(*at, key)] = line
    return out


def _read(body: str, first_line: int, lane: Lane) -> bool:
    items = lane.items
    item: dict[str, Any] | None = None
    indent = -1
    for n, text in enumerate(body.split("\n"), first_line):
        m = _LINE.fullmatch(text)
        if m is None:
            if _SKIP.fullmatch(text):
                continue
            return False
        lead, dash, key, raw = m.groups()
        spaces = len(lead)
        if not _KEY_VALUE[key].fullmatch(raw):
            return False
        if dash:
            if indent < 0:
                indent = spaces
            if spaces != indent:
                return False
            item = {}
            items.append(item)
            lane.lines[("expect", len(items) - 1)] = n
            if len(items) == 1:
                lane.lines[("expect",)] = n
        elif item is None or spaces != indent + 2:
            return False
        if dash and len(dash) != 2:
            return False  # "-   key": the mapping's column is not indent + 2
        at: Path = ("expect", len(items) - 1, key)
        if key in item:
            return False
        if key == "packet":
            value = _pairs(raw, at, n, lane)
            if value is None:
                return False
        elif raw in _SPECIAL:
            return False
        else:
            value = _scalar(raw)
        item[key] = value
        lane.key_lines[at] = lane.lines[at] = n
    return bool(items)


def split(text: str) -> Lane | None:
    """The skeleton and the expectations the lane read, or None (the ordinary path)."""
    if SENTINEL in text:
        return None
    headers = list(_HEADER.finditer(text))
    if len(headers) != 1:
        return None
    head = headers[0]
    end_match = _BODY_END.search(text, head.end())
    end = end_match.start() if end_match else len(text)
    body = text[head.end() : end]
    if any(b in body for b in _ODD_BREAKS) or _NON_PRINTABLE.search(body):
        return None
    header_line = text.count("\n", 0, head.start()) + 1
    lane = Lane("", header_line, [])
    trimmed = body[:-1] if body.endswith("\n") else body
    if not _read(trimmed, header_line + 1, lane):
        return None
    lane.key_lines[("expect",)] = header_line
    blank = "\n" * body.count("\n")
    lane.skeleton = f'{text[: head.start()]}expect: "{SENTINEL}"\n{blank}{text[end:]}'
    return lane


def place(out: Located, lane: Lane) -> bool:
    """Put the lane's items where its sentinel landed, if it is exactly the value of the
    top-level `expect` key on the header line (else the caller takes the ordinary path)."""
    data = out.data
    if not isinstance(data, dict) or data.get("expect") != SENTINEL:
        return False
    if out.key_lines.get(("expect",)) != lane.header_line:
        return False
    if out.lines.get(("expect",)) != lane.header_line or out.duplicate_keys:
        return False
    if any(p[0] == "expect" for p in out.numeric_keys):
        return False
    data["expect"] = lane.items
    out.lines.update(lane.lines)
    out.key_lines.update(lane.key_lines)
    return True


def load_located(text: str, inner: Callable[[str], Located]) -> Located | None:
    """What inner(text) returns, with the `expect:` block read by the lane (inner loads the
    rest); None: not applicable (no block the lane reads, or anything it cannot vouch for)."""
    if not accel.enabled():
        return None
    lane = split(text)
    if lane is None:
        return None
    try:
        out = inner(lane.skeleton)
    except YamlSyntaxError:
        return None  # the ordinary path says what is wrong, with the original text
    return out if place(out, lane) else None
