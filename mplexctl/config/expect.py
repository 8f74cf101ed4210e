"""`expect:` items: checks the schema cannot express, and the frozen Expectation objects.

The same checks serve `explain --packet key=value,...` (a packet without an expectation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mplexctl.config.model import Config, Expectation, Packet
from mplexctl.config.semantic import Problem, decode_tag
from mplexctl.config.yamlsrc import Path
from mplexctl.contract.packet import ETH_HLEN, L4_HLEN, TEST_RUN_MAX_FRAME, frame_size
from mplexctl.errors import UsageError

VERDICT_WORDS = (
    "rewrite",
    "pass",
    "pass_unmatched",
    "drop_length",
    "drop_unknown_tag",
    "drop_malformed",
    "drop_fragment",
)
PACKET_KEYS = (
    "protocol",
    "port",
    "length",
    "tag",
    "payload",
    "ip",
    "vlan",
    "fragment",
    "truncate",
)
# Where a service's tag sits: (protocol, port) -> (service name, tag offset, tag length)
TagPlaces = dict[tuple[str, int], tuple[str, int, int]]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tag_places(data: dict[str, Any]) -> TagPlaces:
    """The tag place of every service whose protocol, port and tag are well-formed."""
    out: TagPlaces = {}
    services = data.get("services")
    for svc in services if isinstance(services, list) else []:
        if not isinstance(svc, dict) or not isinstance(svc.get("tag"), dict):
            continue
        proto, port, name = svc.get("protocol"), _int(svc.get("port")), svc.get("name")
        off, length = _int(svc["tag"].get("offset")), _int(svc["tag"].get("length"))
        if isinstance(proto, str) and None not in (port, off, length) and isinstance(name, str):
            assert port is not None and off is not None and length is not None
            out.setdefault((proto, port), (name, off, length))
    return out


def decode_payload(text: str) -> bytes | str:
    """The payload bytes, or why `text` is not a payload."""
    if text.startswith("hex:"):
        digits = text[4:]
        try:
            if len(digits) % 2:
                raise ValueError
            return bytes.fromhex(digits)
        except ValueError:
            return f"payload {text[:40]!r} must be 'hex:' + an even number of hex digits"
    if not (text.isascii() and text.isprintable()):
        return "payload must be printable ASCII (write other bytes as hex:...)"
    return text.encode("ascii")


def packet_problems(path: Path, raw: dict[str, Any], places: TagPlaces) -> Iterator[Problem]:
    """What is wrong with a packet mapping the schema found well-typed (or partly typed)."""
    proto, port = raw.get("protocol"), _int(raw.get("port"))
    payload, length, tag = raw.get("payload"), _int(raw.get("length")), raw.get("tag")
    size = length
    if isinstance(payload, str):
        if "length" in raw or "tag" in raw:
            yield (
                (*path, "payload"),
                "payload is the whole payload: give it without length and tag",
                False,
            )
        decoded = decode_payload(payload)
        if isinstance(decoded, str):
            yield (*path, "payload"), decoded, False
            return
        size = len(decoded)
    elif "length" not in raw and "payload" not in raw:
        yield path, "missing required key 'length' (or give the whole payload)", False
    if isinstance(tag, str) and isinstance(proto, str) and port is not None:
        place = places.get((proto, port))
        if place is None:
            yield (
                (*path, "tag"),
                f"a tag is written at a service's tag offset, and no service listens on "
                f"{proto}/{port}",
                False,
            )
        else:
            name, off, tag_len = place
            decoded_tag = decode_tag(tag, tag_len) if 1 <= tag_len <= 8 else None
            if isinstance(decoded_tag, str):
                yield (*path, "tag"), f"service {name}: {decoded_tag}", False
            elif length is not None and off + tag_len > length:
                yield (
                    (*path, "tag"),
                    f"service {name}: tag bytes {off}..{off + tag_len - 1} do not fit in a "
                    f"payload of {length} bytes",
                    False,
                )
    vlan, ip = raw.get("vlan", []), _int(raw.get("ip", 4))
    if (
        size is not None
        and isinstance(proto, str)
        and proto in L4_HLEN
        and isinstance(vlan, list)
        and ip in (4, 6)
    ):
        assert ip is not None
        shape = Packet(
            proto, 1, ip=ip, vlan=tuple(vlan), fragment="first" if raw.get("fragment") else None
        )
        total = frame_size(shape, size)
        if total > TEST_RUN_MAX_FRAME:
            yield (
                path,
                f"a frame of {total} bytes: more than the {TEST_RUN_MAX_FRAME} bytes a kernel "
                "test run takes (BPF_PROG_TEST_RUN)",
                False,
            )
        cut = _int(raw.get("truncate"))
        if cut and total - cut < ETH_HLEN:
            yield (
                (*path, "truncate"),
                f"the frame has {total} bytes: truncate may cut at most {total - ETH_HLEN} "
                f"(an Ethernet header must remain), not {cut}",
                False,
            )


def expectation_problems(data: dict[str, Any]) -> Iterator[Problem]:
    items = data.get("expect")
    if not isinstance(items, list):
        return
    places = tag_places(data)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        path: Path = ("expect", i)
        verdict = item.get("verdict")
        if verdict == "rewrite" and "port" not in item:
            yield path, "verdict rewrite needs port (the new destination port)", False
        if verdict != "rewrite" and "port" in item and isinstance(verdict, str):
            yield (
                (*path, "port"),
                f"port is the new destination port of a rewrite; verdict is {verdict}",
                False,
            )
        packet = item.get("packet")
        if isinstance(packet, dict):
            yield from packet_problems((*path, "packet"), packet, places)


def make_packet(raw: dict[str, Any], places: TagPlaces) -> Packet:
    """A Packet from a mapping that passed the schema and packet_problems."""
    proto, port = raw["protocol"], raw["port"]
    tag = None
    if "tag" in raw:
        decoded = decode_tag(raw["tag"], places[(proto, port)][2])
        assert isinstance(decoded, bytes)
        tag = decoded
    payload = None
    if "payload" in raw:
        body = decode_payload(raw["payload"])
        assert isinstance(body, bytes)
        payload = body
    return Packet(
        protocol=proto,
        port=port,
        length=raw.get("length", len(payload) if payload is not None else None),
        tag=tag,
        payload=payload,
        ip=raw.get("ip", 4),
        vlan=tuple(raw.get("vlan", ())),
        fragment=raw.get("fragment"),
        truncate=raw.get("truncate", 0),
    )


def make_expectations(data: dict[str, Any], line_of: Any) -> tuple[Expectation, ...]:
    places = tag_places(data)
    return tuple(
        Expectation(
            index=i,
            line=line_of(("expect", i)),
            packet=make_packet(item["packet"], places),
            verdict=item["verdict"],
            port=item.get("port"),
            name=item.get("name"),
        )
        for i, item in enumerate(data.get("expect", ()))
    )


def _port(value: Any) -> bool:
    return _int(value) is not None and 1 <= value <= 65535


def _packet_typed(p: Any) -> bool:
    if not isinstance(p, dict) or not {"protocol", "port"} <= p.keys():
        return False
    if not set(p) <= set(PACKET_KEYS) or p["protocol"] not in ("udp", "tcp"):
        return False
    if not _port(p["port"]):
        return False
    if "length" in p and not (_int(p["length"]) is not None and 0 <= p["length"] <= 65535):
        return False
    if any(k in p and not isinstance(p[k], str) for k in ("tag", "payload")):
        return False
    if "ip" in p and (_int(p["ip"]) is None or p["ip"] not in (4, 6)):
        return False
    if "fragment" in p and p["fragment"] not in ("first", "later"):
        return False
    if "truncate" in p and not (_int(p["truncate"]) is not None and 0 <= p["truncate"] <= 65535):
        return False
    vlan = p.get("vlan", [])
    return (
        isinstance(vlan, list)
        and len(vlan) <= 2
        and all(_int(v) is not None and 0 <= v <= 4095 for v in vlan)
    )


def expect_valid(items: Any) -> bool:
    """What the schema asks of `expect:`, checked in plain Python (far faster than
    jsonschema on many items). True implies that jsonschema finds nothing
    (tests/config/test_expect)."""
    if not isinstance(items, list):
        return False
    for e in items:
        if not isinstance(e, dict) or not {"packet", "verdict"} <= e.keys():
            return False
        if not set(e) <= {"name", "packet", "verdict", "port"}:
            return False
        if "name" in e and not isinstance(e["name"], str):
            return False
        if not isinstance(e["verdict"], str) or e["verdict"] not in VERDICT_WORDS:
            return False
        if "port" in e and not _port(e["port"]):
            return False
        if not _packet_typed(e["packet"]):
            return False
    return True


def places_of(config: Config) -> TagPlaces:
    return {(s.protocol, s.port): (s.name, s.tag.offset, s.tag.length) for s in config.services}


def _spec_value(key: str, value: str) -> Any:
    if key == "vlan":
        ids = [v for v in value.split("/") if v]
        return [int(v) if v.isdigit() else v for v in ids]
    if key in ("port", "length", "ip", "truncate") and value.isdigit():
        return int(value)
    return value


def packet_from_spec(spec: str, config: Config) -> Packet:
    """`explain --packet protocol=udp,port=5000,length=292,tag=600` (vlan=100/200): the same
    keys and checks as an expectation's packet; problems raise UsageError."""
    from mplexctl.config.schema import definition_problems

    raw: dict[str, Any] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(
                f"--packet: {part!r} is not key=value (keys: {', '.join(PACKET_KEYS)})"
            )
        if key in raw:
            raise UsageError(f"--packet: key {key!r} given twice")
        raw[key] = _spec_value(key, value.strip())
    places = places_of(config)
    problems = [*definition_problems("packet", raw), *packet_problems((), raw, places)]
    if problems:
        said = [f"{'.'.join(map(str, path))}: {msg}" if path else msg for path, msg, _ in problems]
        raise UsageError("--packet: " + "; ".join(said))
    return make_packet(raw, places)
