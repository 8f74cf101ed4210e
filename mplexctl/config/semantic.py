"""Checks the schema cannot express. Each yields a Problem; data may be partly invalid."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from typing import Any

from mplexctl.config.model import Limits, Window, tag_text
from mplexctl.config.yamlsrc import Path
from mplexctl.constants import TAG_MAX_LEN

Problem = tuple[Path, str, bool]  # (path, message, the line is that of the key at path)
_IFNAME_BAD = re.compile(r"[/:\s\x00]")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_HEX = set(string.hexdigits)
_HEX_DIGITS = re.compile("[0-9A-Fa-f]*")
IFNAMSIZ = 16  # Linux: 15 bytes + NUL
MAX_LENGTH = 65535  # payload lengths (and window bounds) are 16-bit


def _at(path: Path, message: str) -> Problem:
    return path, message, False


def _at_key(path: Path, message: str) -> Problem:
    return path, message, True


def _dicts(items: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    if isinstance(items, list):
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield i, item


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _label(i: int, svc: dict[str, Any]) -> str:
    """How messages name a service: its name if valid, else its position."""
    name = svc.get("name")
    if isinstance(name, str) and _NAME.fullmatch(name):
        return name
    return repr(name) if isinstance(name, str) else f"#{i}"


def decode_tag(key: str, length: int) -> bytes | str:
    """Decoded tag bytes, or the reason the key is not a tag of `length` bytes."""
    if key.startswith("hex:"):
        digits = key[4:]
        if len(digits) != 2 * length or not set(digits) <= _HEX:
            return (
                f"hex tag {key!r} must be 'hex:' + {2 * length} hex digits "
                f"(tag.length {length}), not {digits!r}"
            )
        return bytes.fromhex(digits)
    if not all(0x20 <= ord(ch) < 0x7F for ch in key):
        return f"tag {key!r} must be printable ASCII (write other bytes as hex:...)"
    if len(key) != length:
        return f"tag {key!r} has {len(key)} character(s), tag.length is {length}"
    return key.encode("ascii")


def decode_routes(routes: dict[str, Any], length: int) -> dict[bytes, Any] | None:
    """{tag bytes: value} with every key decoded in bulk (as decode_tag does, key by key), or
    None when a key is not a tag of `length` bytes or two keys name the same tag. A big route
    table decodes much faster this way than key by key (test_decode_routes.py)."""
    if length < 1:
        return None
    hexed = [k for k in routes if k.startswith("hex:")]
    if not hexed or len(hexed) == len(routes):
        plain = [] if hexed else list(routes)
        values = list(routes.values())  # already in the order of the tags below
    else:
        plain = [k for k in routes if not k.startswith("hex:")]
        values = list(map(routes.__getitem__, plain + hexed))
    tags: list[bytes] = []
    if plain:
        joined = "".join(plain)
        if not (joined.isascii() and joined.isprintable()) or set(map(len, plain)) != {length}:
            return None
        tags += map(str.encode, plain)
    if hexed:
        # Each key is "hex:" + 2*length characters; with all of them hex digits, removing
        # every "hex:" from the joined keys removes exactly the prefixes.
        digits = "".join(hexed).replace("hex:", "")
        if set(map(len, hexed)) != {4 + 2 * length} or len(digits) != 2 * length * len(hexed):
            return None
        if not _HEX_DIGITS.fullmatch(digits):
            return None
        blob = bytes.fromhex(digits)
        tags += [blob[i : i + length] for i in range(0, len(blob), length)]
    table = dict(zip(tags, values, strict=True))
    return table if len(table) == len(routes) else None


def check_interfaces(data: dict[str, Any]) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    for i, iface in _dicts(data.get("interfaces")):
        name = iface.get("name")
        if not isinstance(name, str):
            continue
        path = ("interfaces", i, "name")
        size = len(name.encode("utf-8", "surrogatepass"))
        if not 1 <= size < IFNAMSIZ:
            yield _at(path, f"interface name {name!r} must be 1..{IFNAMSIZ - 1} bytes, not {size}")
        elif _IFNAME_BAD.search(name):
            yield _at(path, f"interface name {name!r} must not contain '/', ':', whitespace or NUL")
        elif name in (".", ".."):
            yield _at(path, f"interface name {name!r} is reserved by Linux")
        if name in seen:
            yield _at(
                path, f"interface {name!r} is listed twice (first as interfaces[{seen[name]}])"
            )
        seen.setdefault(name, i)
        if iface.get("hook") == "tc" and "xdp_mode" in iface:
            yield _at_key(
                ("interfaces", i, "xdp_mode"),
                f"interface {name}: xdp_mode applies to hook xdp only, not to hook tc",
            )


def _windows(svc: dict[str, Any]) -> list[tuple[int, Window]]:
    out = []
    for j, w in _dicts(svc.get("payload_length")):
        lo, hi = _int(w.get("min")), _int(w.get("max"))
        # Out-of-range bounds are the schema's to report; checking them here would only echo.
        if lo is not None and hi is not None and 0 <= lo <= MAX_LENGTH and 0 <= hi <= MAX_LENGTH:
            out.append((j, Window(lo, hi)))
    return out


Tables = dict[int, dict[bytes, Any]]  # service position -> decoded route table


def check_service(
    i: int, svc: dict[str, Any], service_ports: dict[int, str], tables: Tables | None = None
) -> Iterator[Problem]:
    base: Path = ("services", i)
    name = _label(i, svc)
    windows = _windows(svc)
    for j, w in windows:
        if w.min > w.max:
            yield _at(
                (*base, "payload_length", j), f"service {name}: window min {w.min} > max {w.max}"
            )
    # Sorted by min, a window overlaps an earlier one iff it starts before the farthest max.
    farthest: Window | None = None
    for w, j in sorted((w, j) for j, w in windows if w.min <= w.max):
        if farthest is not None and w.min <= farthest.max:
            yield _at(
                (*base, "payload_length", j), f"service {name}: window {w} overlaps {farthest}"
            )
        if farthest is None or w.max > farthest.max:
            farthest = w
    raw_tag = svc.get("tag")
    tag: dict[str, Any] = raw_tag if isinstance(raw_tag, dict) else {}
    off, length = _int(tag.get("offset")), _int(tag.get("length"))
    shortest = min((w for _, w in windows), key=lambda w: w.min, default=None)
    if (
        off is not None
        and length is not None
        and off >= 0
        and 1 <= length <= TAG_MAX_LEN
        and shortest is not None
        and off + length > shortest.min
    ):
        yield _at(
            (*base, "tag"),
            f"service {name}: tag bytes {off}..{off + length - 1} do not fit in the shortest "
            f"payload of window {shortest} (tag.offset + tag.length = {off + length} "
            f"> {shortest.min})",
        )
    yield from _check_routes(base, name, svc, length, service_ports, tables)


def _check_routes(
    base: Path,
    name: str,
    svc: dict[str, Any],
    length: int | None,
    service_ports: dict[int, str],
    tables: Tables | None,
) -> Iterator[Problem]:
    routes = svc.get("routes", {})
    if not isinstance(routes, dict):
        return
    if not routes and svc.get("unmatched", "drop") == "drop":
        yield _at(
            (*base, "routes"),
            f"service {name}: no routes and unmatched: drop would drop every packet "
            "(add a route or set unmatched: pass)",
        )
    if (
        length is not None
        and 1 <= length <= TAG_MAX_LEN
        and set(map(type, routes.values())) <= {int}
        and service_ports.keys().isdisjoint(routes.values())
        and (table := decode_routes(routes, length)) is not None
    ):
        if tables is not None:
            tables[int(base[1])] = table
        return  # all well, found in bulk; else the loop below says what is wrong, route by route
    seen: dict[bytes, str] = {}
    for key, port in routes.items():
        path = (*base, "routes", key)
        if _int(port) is not None and port in service_ports:
            yield _at(
                path,
                f"service {name}: route {key!r} -> {port} targets the port of service "
                f"{service_ports[port]} (a route must lead away from every service port)",
            )
        if length is None or not 1 <= length <= TAG_MAX_LEN:
            continue
        tag = decode_tag(key, length)
        if isinstance(tag, str):
            yield _at_key(path, f"service {name}: {tag}")
            continue
        if tag in seen:
            yield _at_key(
                path,
                f"service {name}: tag {key!r} is the same tag as {seen[tag]!r} ({tag_text(tag)})",
            )
        seen.setdefault(tag, key)


def check_services(data: dict[str, Any], tables: Tables | None = None) -> Iterator[Problem]:
    services = dict(_dicts(data.get("services")))
    names: dict[str, int] = {}
    endpoints: dict[tuple[str, int], int] = {}
    ports: dict[int, str] = {}
    for i, svc in services.items():
        if (port := _int(svc.get("port"))) is not None:
            ports.setdefault(port, _label(i, svc))
    for i, svc in services.items():
        name = svc.get("name")
        if isinstance(name, str):
            if name in names:
                yield _at(
                    ("services", i, "name"),
                    f"service name {name!r} is used twice (first by services[{names[name]}])",
                )
            names.setdefault(name, i)
        proto, port = svc.get("protocol"), _int(svc.get("port"))
        if isinstance(proto, str) and port is not None:
            if (proto, port) in endpoints:
                first = endpoints[(proto, port)]
                yield _at(
                    ("services", i, "port"),
                    f"service {_label(i, svc)}: {proto}/{port} is already served by "
                    f"services[{first}] ({_label(first, services[first])})",
                )
            endpoints.setdefault((proto, port), i)
        yield from check_service(i, svc, ports, tables)


TCP_RESTORE = (
    "service {name}: reply: restore works for udp services only: a tcp service is routed "
    "segment by segment, and the handshake (SYN, SYN-ACK) carries no payload, so it falls "
    "outside every window and is dropped: no TCP connection to {port} is ever set up, "
    "and no reply can come back to restore (README: TCP segments)"
)


def _port_words(svc: dict[str, Any]) -> str:
    port = _int(svc.get("port"))
    return "its port" if port is None else f"port {port}"


def check_replies(data: dict[str, Any]) -> Iterator[Problem]:
    """`reply: restore` is for udp services (a tcp service drops the handshake, so there is
    no connection whose replies could be restored) and needs an interface for the replies to
    leave through (the egress program runs on the file's interfaces). That a restoring
    service's route ports are not the port of another restoring service is part of a wider
    rule: no route leads to any service port (check_service)."""
    services = dict(_dicts(data.get("services")))
    restoring = {i: s for i, s in services.items() if s.get("reply") == "restore"}
    if not restoring:
        return
    for i, svc in restoring.items():
        if svc.get("protocol") == "tcp":
            yield _at(
                ("services", i, "reply"),
                TCP_RESTORE.format(name=_label(i, svc), port=_port_words(svc)),
            )
    interfaces = data.get("interfaces")
    if isinstance(interfaces, list) and not interfaces:
        for i, svc in restoring.items():
            yield _at(
                ("services", i, "reply"),
                f"service {_label(i, svc)}: reply: restore needs an interface in the file "
                "(the replies leave through it)",
            )


def check_limits(data: dict[str, Any], limits: Limits) -> Iterator[Problem]:
    services = list(_dicts(data.get("services")))
    if len(services) > limits.services:
        yield _at(
            ("services",), f"{len(services)} services exceed limits.services = {limits.services}"
        )
    total = 0
    for i, svc in services:
        windows = svc.get("payload_length")
        if isinstance(windows, list) and len(windows) > limits.windows:
            yield _at(
                ("services", i, "payload_length"),
                f"service {_label(i, svc)}: {len(windows)} windows exceed "
                f"limits.windows = {limits.windows}",
            )
        routes = svc.get("routes")
        total += len(routes) if isinstance(routes, dict) else 0
    if total > limits.routes:
        yield _at(
            ("services",),
            f"route map full: {total} routes in all services exceed "
            f"limits.routes = {limits.routes}",
        )


def semantic_problems(data: Any, limits: Limits, tables: Tables | None = None) -> list[Problem]:
    """Every problem; `tables` receives the route tables decoded on the way (for the Config)."""
    if not isinstance(data, dict):
        return []
    return [
        *check_interfaces(data),
        *check_services(data, tables),
        *check_replies(data),
        *check_limits(data, limits),
    ]
