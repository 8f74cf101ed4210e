"""decode_routes (bulk) decodes exactly as decode_tag does key by key, and refuses the same."""

from __future__ import annotations

import random

import pytest

from mplexctl.config.semantic import decode_routes, decode_tag

pytestmark = pytest.mark.unit

ALPHABET = "0123456789abcdefABCDEF:hexHEX -\x7f\x1fé"


def _key(rng: random.Random, length: int) -> str:
    roll = rng.random()
    if roll < 0.45:
        return "hex:" + "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(2 * length))
    if roll < 0.9:
        return "".join(chr(rng.randint(0x20, 0x7E)) for _ in range(length))
    size = rng.choice([length - 1, length, length + 1, 2 * length, 2 * length + 4])
    return rng.choice(["hex:", "", "hex", "HEX:"]) + "".join(
        rng.choice(ALPHABET) for _ in range(max(0, size))
    )


def _key_by_key(routes: dict[str, int], length: int) -> dict[bytes, int] | None:
    out: dict[bytes, int] = {}
    for key, port in routes.items():
        tag = decode_tag(key, length)
        if isinstance(tag, str) or tag in out:
            return None
        out[tag] = port
    return out


def test_bulk_decode_equals_key_by_key() -> None:
    rng = random.Random(5)
    accepted = refused = 0
    for _ in range(3000):
        length = rng.randint(1, 8)
        routes = {_key(rng, length): rng.randint(1, 65535) for _ in range(rng.randint(1, 12))}
        if rng.random() < 0.05 and routes:  # the same tag written twice (hex and plain)
            tag = next(iter(routes))
            if not tag.startswith("hex:") and tag.isascii():
                routes["hex:" + tag.encode().hex()] = 1
        want = _key_by_key(routes, length)
        assert decode_routes(routes, length) == want, routes
        accepted += want is not None
        refused += want is None
    assert accepted > 500 and refused > 500


def test_tricky_keys() -> None:
    assert decode_routes({"hex:414": 1}, 2) is None  # odd digit count
    assert decode_routes({"hex:41 42": 1}, 2) is None  # fromhex would skip the space
    assert decode_routes({"hexhex:4": 1, "ab": 2}, 2) is None
    assert decode_routes({"AB": 1, "hex:4142": 2}, 2) is None  # the same tag twice
    assert decode_routes({"hex:": 1}, 0) is None
    assert decode_routes({"a\x7f": 1}, 2) is None
    assert decode_routes({"hex:0a0B": 1, "zz": 2}, 2) == {b"\x0a\x0b": 1, b"zz": 2}
