"""Process-level host plumbing: network namespaces, the apply lock, bpffs, fault points."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Generic, TypeVar

from mplexctl.errors import PERMISSION_ERRNOS, HostError, LockError, PrivilegeError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
LOCK_DIR = "/run/mplexctl"
BPFFS = "/sys/fs/bpf"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
FAULT_ENV = "MPLEXCTL_FAULT_KILL_AT"  # test hook: SIGKILL ourselves at a named point
T = TypeVar("T")


def enter_netns(name: str) -> None:
    """Move this process into the named network namespace (as `ip -n NAME`)."""
    if "/" in name or name in ("", ".", ".."):
        raise HostError(f"invalid network namespace name {name!r}")
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise HostError(f"network namespace {name!r} does not exist ({path})") from None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if err in PERMISSION_ERRNOS:
                raise PrivilegeError(f"entering network namespace {name!r}")
            raise HostError(f"cannot enter network namespace {name!r}: {os.strerror(err)}")
    finally:
        os.close(fd)


def netns_id() -> int:
    """Inode of this process's network namespace: names locks and pins per namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def where() -> str:
    """Where this process acts, for messages: "in network namespace 'NAME'" when /run/netns
    names its namespace (--netns, or `ip netns exec`), else "on this host"."""
    mine = netns_id()
    with suppress(OSError):
        for name in sorted(os.listdir(NETNS_RUN_DIR)):
            with suppress(OSError):
                if os.stat(os.path.join(NETNS_RUN_DIR, name)).st_ino == mine:
                    return f"in network namespace {name!r}"
    return "on this host"


def netns_key() -> str:
    """A name for this process's network namespace that `--netns NAME` and `ip netns exec NAME`
    share and that survives a reboot: `host` for the initial namespace, `netns/NAME` for a
    named one (the first name, sorted, when several names bind the same namespace), else
    `netns-inode/INODE` (an unnamed namespace, e.g. a container's)."""
    me = os.stat("/proc/thread-self/ns/net")
    try:
        init = os.stat("/proc/1/ns/net")
        if (init.st_dev, init.st_ino) == (me.st_dev, me.st_ino):
            return "host"
    except OSError:
        pass
    try:
        names = sorted(os.listdir(NETNS_RUN_DIR))
    except OSError:
        names = []
    for name in names:
        try:
            st = os.stat(os.path.join(NETNS_RUN_DIR, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
            return f"netns/{name}"
    return f"netns-inode/{me.st_ino}"


def boot_id() -> str:
    """Identifies this boot of the machine (a process of an earlier boot is gone)."""
    try:
        with open(BOOT_ID) as fh:
            return fh.read().strip()
    except OSError:
        return ""


_held: dict[int, int] = {}  # netns inode -> depth of host_lock held by this process


@contextmanager
def host_lock(timeout: float = 120.0) -> Iterator[None]:
    """Serialize applies per network namespace (flock; released by the kernel on a crash).
    Re-entrant within one process: a rollback or revert re-applies through `apply`, which
    takes the lock again."""
    ns = netns_id()
    if _held.get(ns):
        _held[ns] += 1
        try:
            yield
        finally:
            _held[ns] -= 1
        return
    os.makedirs(LOCK_DIR, exist_ok=True)
    path = os.path.join(LOCK_DIR, f"netns-{ns}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise LockError(
                        f"another mplexctl holds {path} for more than {timeout:.0f} s"
                    ) from None
                time.sleep(0.02)
        _held[ns] = 1
        try:
            yield
        finally:
            _held.pop(ns, None)
    finally:
        os.close(fd)


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf when missing (pins are a convenience only)."""
    if os.path.ismount(BPFFS):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpf", BPFFS.encode(), b"bpf", 0, None) != 0:
        err = ctypes.get_errno()
        raise HostError(f"cannot mount bpffs at {BPFFS}: {os.strerror(err)}")


class Pending(Generic[T]):
    """The result of a function running in another thread (see in_background)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        # A thread starts in the network namespace of the thread that creates it.
        self._thread = threading.Thread(target=self._run, name="mplexctl-background")

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@contextmanager
def in_background(fn: Callable[[], T]) -> Iterator[Pending[T]]:
    """Run fn in another thread while the block runs; the thread is always joined on exit."""
    pending = Pending(fn)
    pending._thread.start()
    try:
        yield pending
    finally:
        pending._thread.join()


def fault_point(name: str) -> None:
    """Crash here (SIGKILL) when the test hook names this point; a no-op otherwise."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
