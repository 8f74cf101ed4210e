"""Read-only rtnetlink link dump: every interface and the XDP program ids it carries.

Probing only needs RTM_GETLINK, and importing pyroute2 costs a large part of a no-op apply,
so the probe reads links with this small reader; pyroute2 does every change
(attach, atomic replace, detach). tests/backend/test_rtnl.py checks both agree.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_ROUTE = 0
RTM_GETLINK = 18
RTM_NEWLINK = 16
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

NLMSGHDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BxHiII")
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


def _dump_once(sock: socket.socket, seq: int) -> tuple[list[RawLink], bool]:
    req = NLMSGHDR.pack(
        NLMSGHDR.size + IFINFOMSG.size, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    ) + IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    sock.send(req)
    links: list[RawLink] = []
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
                    return links, interrupted
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, pos + NLMSGHDR.size)[0]
                    raise NetlinkDumpError(code, f"rtnetlink link dump: {os.strerror(code)}")
                if kind == RTM_NEWLINK:
                    links.append(_link(data, pos + NLMSGHDR.size, end))
            pos += (length + 3) & ~3


def dump_links() -> list[RawLink]:
    """Every link of the current network namespace (one consistent dump)."""
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
    ) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((0, 0))
        for seq in range(1, MAX_RETRIES + 1):
            links, interrupted = _dump_once(s, seq)
            if not interrupted:
                return links
    raise NetlinkDumpError(errno.EAGAIN, "rtnetlink link dump kept being interrupted")
