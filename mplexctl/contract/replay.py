"""Replay a capture (pcap or pcapng) against a config: packets per service, verdict and new
port. Captures are read with scapy's readers, imported only here (slow to import)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from mplexctl.config.model import Config
from mplexctl.contract.expect import PASS
from mplexctl.contract.model import parse, run_model
from mplexctl.errors import UsageError

LINKTYPE_ETHERNET = 1
Row = tuple[str | None, str, int | None]  # (service, verdict, new port)


@dataclass
class Capture:
    frames: list[bytes] = field(default_factory=list)
    truncated: int = 0  # frames the capture cut short (snap length): replayed as captured


def read_capture(path: str) -> Capture:
    """Every frame of an Ethernet pcap or pcapng file."""
    try:
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapReader
    except ImportError:
        raise UsageError("--pcap needs scapy (pip install scapy; make setup installs it)") from None
    out = Capture()
    try:
        reader = RawPcapReader(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except Scapy_Exception as exc:
        raise UsageError(f"{path}: not a pcap or pcapng capture ({exc})") from None
    try:
        for data, meta in _frames(reader, path):
            out.frames.append(data)
            out.truncated += getattr(meta, "wirelen", len(data)) > len(data)
    except Scapy_Exception as exc:
        raise UsageError(
            f"{path}: damaged capture after {len(out.frames)} frames ({exc})"
        ) from None
    finally:
        reader.close()
    return out


def _frames(reader: Iterable[tuple[bytes, object]], path: str) -> Iterator[tuple[bytes, object]]:
    file_link = getattr(reader, "linktype", None)
    for data, meta in reader:
        link = getattr(meta, "linktype", file_link)
        if link != LINKTYPE_ETHERNET:
            raise UsageError(f"{path}: link type {link} is not Ethernet (1): cannot replay it")
        yield bytes(data), meta


def replay(config: Config, frames: Iterable[bytes]) -> Counter[Row]:
    """(service, verdict, new port) -> packets, as the model decides each frame."""
    out: Counter[Row] = Counter()
    for frame in frames:
        result = run_model(config, frame)
        port = None
        if result.verdict == "rewrite":
            parsed = parse(result.frame)
            assert parsed is not None
            port = int.from_bytes(result.frame[parsed.l4 + 2 : parsed.l4 + 4], "big")
        out[(result.service, result.verdict or PASS, port)] += 1
    return out
