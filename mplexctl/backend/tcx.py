"""TC attachment through tcx (kernel 6.6+): query, attach, atomic replace, detach (bpf(2)).

A tcx hook holds a list of programs; ours is one of them, every other program (and every
cls_bpf filter of a clsact qdisc) is left alone. Attachments are made with BPF_PROG_ATTACH,
not BPF_LINK_CREATE: a link lives only as long as a file descriptor or a pin holds it, and
mplexctl keeps no pins (the kernel is the source of truth). BPF_F_REPLACE swaps exactly the
program we saw for the new one, atomically, as XDP_FLAGS_REPLACE does for XDP.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from mplexctl.backend import bpfsys
from mplexctl.errors import HostError, KernelError

PROG_ATTACH, PROG_DETACH, PROG_QUERY = 8, 9, 16  # enum bpf_cmd
TCX_INGRESS, TCX_EGRESS = 46, 47  # enum bpf_attach_type
F_REPLACE = 1 << 2  # BPF_F_REPLACE
DIRECTIONS = {"ingress": TCX_INGRESS, "egress": TCX_EGRESS}
MAX_PROGS = 64  # programs read back per hook (a query says how many there are)


def query(ifindex: int, direction: str) -> list[int]:
    """Ids of the programs attached to the tcx hook of an interface, in order ([]: none)."""
    ids = ctypes.create_string_buffer(4 * MAX_PROGS)
    attr = struct.pack(
        "<IIIIQII", ifindex, DIRECTIONS[direction], 0, 0, ctypes.addressof(ids), MAX_PROGS, 0
    )
    try:
        _, buf = bpfsys.sys_bpf(PROG_QUERY, attr.ljust(64, b"\0"), f"tcx {direction} query")
    except bpfsys.BpfError as exc:
        if exc.errno == errno.ENODEV:
            return []
        raise
    count = min(struct.unpack_from("<I", buf.raw, 24)[0], MAX_PROGS)
    return list(struct.unpack_from(f"<{count}I", ids.raw))


def _explain(exc: bpfsys.BpfError, what: str, link: str) -> Exception:
    if exc.errno == errno.ENODEV:
        return HostError(f"{link}: interface disappeared ({what})")
    if exc.errno in (errno.ENOENT, errno.ERANGE) and what.startswith("replace"):
        return KernelError(f"{link}: the attached TC program changed under us ({what}); re-run")
    if exc.errno == errno.EEXIST:
        return KernelError(f"{link}: the program is already attached ({what})")
    if exc.errno == errno.EINVAL:
        return HostError(f"{link}: this kernel has no tcx hooks ({what}: {exc.strerror})")
    return KernelError(f"{link}: {what} failed: {exc.strerror}")


def attach(
    ifindex: int, link: str, prog_fd: int, direction: str, expected_fd: int | None = None
) -> None:
    """Attach prog_fd at the end of the hook; with expected_fd, replace exactly that program
    in place (atomic: every packet sees the old or the new one)."""
    flags = F_REPLACE if expected_fd is not None else 0
    attr = struct.pack(
        "<IIIIIIQ", ifindex, prog_fd, DIRECTIONS[direction], flags, expected_fd or 0, 0, 0
    )
    what = f"{'replace' if expected_fd is not None else 'attach'} (tcx {direction})"
    try:
        bpfsys.sys_bpf(PROG_ATTACH, attr, what)
    except bpfsys.BpfError as exc:
        raise _explain(exc, what, link) from None


def detach(ifindex: int, link: str, prog_fd: int, direction: str) -> None:
    """Detach exactly prog_fd's program from the hook (never another one)."""
    attr = struct.pack("<IIIIIIQ", ifindex, prog_fd, DIRECTIONS[direction], 0, 0, 0, 0)
    what = f"detach (tcx {direction})"
    try:
        bpfsys.sys_bpf(PROG_DETACH, attr, what)
    except bpfsys.BpfError as exc:
        if exc.errno == errno.ENOENT:  # already gone: what detach wants
            return
        raise _explain(exc, what, link) from None
