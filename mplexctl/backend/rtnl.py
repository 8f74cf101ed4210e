"""Read-only rtnetlink dumps: every interface and the XDP program ids it carries, the links
with a clsact qdisc and the cls_bpf filters of a clsact hook (the TC fallback, clsact.py).

Probing only needs dumps, and importing pyroute2 costs a large part of a no-op apply,
so the probe reads links with this small reader; pyroute2 does every change
(attach, atomic replace, detach). tests/backend/test_rtnl.py checks both agree.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

NETLINK_ROUTE = 0
RTM_GETLINK = 18
RTM_NEWLINK = 16
RTM_NEWQDISC, RTM_GETQDISC = 36, 38
RTM_NEWTFILTER, RTM_GETTFILTER = 44, 46
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER
IFLA_IFNAME = 3
IFLA_XDP = 43
IFLA_XDP_ATTACHED = 2
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID = 5
IFLA_XDP_SKB_PROG_ID = 6
XDP_ATTACHED_MULTI = 4
IFF_UP = 0x1
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_NAME, TCA_BPF_FLAGS, TCA_BPF_ID = 7, 8, 11
TCA_BPF_FLAG_ACT_DIRECT = 1

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info (prio << 16 | proto)
RTATTR = struct.Struct("=HH")
RECV_BUF = 1 << 18  # a dump message holds at most one link's attributes (< 32 KiB)
MAX_RETRIES = 5  # a dump interrupted by concurrent link changes is repeated


@dataclass(frozen=True)
class RawLink:
    name: str
    index: int
    attached: int  # XDP_ATTACHED_*: 0 none, 1 drv, 2 skb, 3 hw, 4 multi
    prog_id: int
    up: bool = True  # IFF_UP: administratively up


@dataclass(frozen=True)
class RawFilter:
    """A cls_bpf filter of a clsact hook."""

    pref: int
    protocol: int  # ETH_P_*, host order
    handle: int
    prog_id: int
    direct_action: bool
    name: str = ""  # TCA_BPF_NAME: the name given at attach (mplex's: "mplex")


_T = TypeVar("_T")
_Parse = Callable[[int, bytes, int, int], "_T | None"]


class NetlinkDumpError(OSError):
    pass


def _attrs(buf: bytes, start: int, end: int) -> dict[int, bytes]:
    """Type -> payload of the attributes in buf[start:end] (4-byte aligned TLVs)."""
    out: dict[int, bytes] = {}
    pos = start
    while pos + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(buf, pos)
        if length < RTATTR.size or pos + length > end:
            break
        out[kind & NLA_TYPE_MASK] = buf[pos + RTATTR.size : pos + length]
        pos += (length + 3) & ~3
    return out


def _u32(raw: bytes | None) -> int:
    return struct.unpack_from("=I", raw)[0] if raw and len(raw) >= 4 else 0


def _link(msg: bytes, start: int, end: int) -> RawLink:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(msg, start)
    attrs = _attrs(msg, start + IFINFOMSG.size, end)
    name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    xdp_raw = attrs.get(IFLA_XDP)
    attached = prog = 0
    if xdp_raw:
        xdp = _attrs(xdp_raw, 0, len(xdp_raw))
        attached = xdp.get(IFLA_XDP_ATTACHED, b"\0")[0]
        prog = _u32(xdp.get(IFLA_XDP_PROG_ID))
        if attached == XDP_ATTACHED_MULTI:  # several modes: prefer the driver program
            prog = _u32(xdp.get(IFLA_XDP_DRV_PROG_ID)) or _u32(xdp.get(IFLA_XDP_SKB_PROG_ID))
    return RawLink(name, index, attached, prog, bool(flags & IFF_UP))


def _dump_once(
    sock: socket.socket, seq: int, request: tuple[int, bytes], parse: _Parse[_T]
) -> tuple[list[_T], bool]:
    kind_req, body = request
    sock.send(
        NLMSGHDR.pack(NLMSGHDR.size + len(body), kind_req, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        + body
    )
    out: list[_T] = []
    interrupted = False
    while True:
        data = sock.recv(RECV_BUF)
        pos = 0
        while pos + NLMSGHDR.size <= len(data):
            length, kind, flags, msg_seq, _pid = NLMSGHDR.unpack_from(data, pos)
            if length < NLMSGHDR.size:
                raise NetlinkDumpError(errno.EPROTO, "rtnetlink: malformed message")
            end = pos + length
            if msg_seq == seq:
                interrupted |= bool(flags & NLM_F_DUMP_INTR)
                if kind == NLMSG_DONE:
                    return out, interrupted
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, pos + NLMSGHDR.size)[0]
                    raise NetlinkDumpError(code, f"rtnetlink dump: {os.strerror(code)}")
                item = parse(kind, data, pos + NLMSGHDR.size, end)
                if item is not None:
                    out.append(item)
            pos += (length + 3) & ~3


def _dump(request: tuple[int, bytes], parse: _Parse[_T]) -> list[_T]:
    """One consistent dump (repeated while concurrent changes interrupt it)."""
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
    ) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((0, 0))
        for seq in range(1, MAX_RETRIES + 1):
            items, interrupted = _dump_once(s, seq, request, parse)
            if not interrupted:
                return items
    raise NetlinkDumpError(errno.EAGAIN, "rtnetlink dump kept being interrupted")


def _parse_link(kind: int, msg: bytes, start: int, end: int) -> RawLink | None:
    return _link(msg, start, end) if kind == RTM_NEWLINK else None


def dump_links() -> list[RawLink]:
    """Every link of the current network namespace (one consistent dump)."""
    return _dump((RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)), _parse_link)


INGRESS_QDISCS = (b"clsact", b"ingress")  # the qdiscs at TC_H_INGRESS that hold filters


def _parse_ingress_qdisc(kind: int, msg: bytes, start: int, end: int) -> tuple[int, str] | None:
    if kind != RTM_NEWQDISC:
        return None
    _family, index, _handle, _parent, _info = TCMSG.unpack_from(msg, start)
    name = _attrs(msg, start + TCMSG.size, end).get(TCA_KIND, b"").rstrip(b"\0")
    return (index, name.decode()) if name in INGRESS_QDISCS else None


def ingress_qdiscs() -> dict[int, str]:
    """Link index -> its clsact (or legacy ingress) qdisc: where cls_bpf filters can be."""
    body = TCMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return dict(_dump((RTM_GETQDISC, body), _parse_ingress_qdisc))


def _parse_filter(kind: int, msg: bytes, start: int, end: int) -> RawFilter | None:
    if kind != RTM_NEWTFILTER:
        return None
    _family, _index, handle, _parent, info = TCMSG.unpack_from(msg, start)
    attrs = _attrs(msg, start + TCMSG.size, end)
    if attrs.get(TCA_KIND, b"").rstrip(b"\0") != b"bpf" or TCA_OPTIONS not in attrs:
        return None  # another classifier, or a filter chain's head (no handle, no options)
    opts = attrs[TCA_OPTIONS]
    bpf = _attrs(opts, 0, len(opts))
    prog_id = _u32(bpf.get(TCA_BPF_ID))
    flags = _u32(bpf.get(TCA_BPF_FLAGS))
    pref, protocol = info >> 16, socket.ntohs(info & 0xFFFF)
    name = bpf.get(TCA_BPF_NAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
    return RawFilter(pref, protocol, handle, prog_id, bool(flags & TCA_BPF_FLAG_ACT_DIRECT), name)


def dump_filters(index: int, parent: int) -> list[RawFilter]:
    """The cls_bpf filters under `parent` (a clsact hook) of link `index`, in order."""
    return _dump((RTM_GETTFILTER, TCMSG.pack(socket.AF_UNSPEC, index, 0, parent, 0)), _parse_filter)


def _parse_pref(kind: int, msg: bytes, start: int, end: int) -> int | None:
    if kind != RTM_NEWTFILTER:
        return None
    info = TCMSG.unpack_from(msg, start)[4]
    return int(info >> 16)


def filter_prefs(index: int, parent: int) -> set[int]:
    """Every priority in use under `parent` of link `index`, by any classifier (bpf, u32,
    flower, ...) in any chain: the kernel refuses a filter of another kind there."""
    body = TCMSG.pack(socket.AF_UNSPEC, index, 0, parent, 0)
    return set(_dump((RTM_GETTFILTER, body), _parse_pref))
