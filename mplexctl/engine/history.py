"""Checkpoints: what every apply, rollback and revert put in force, kept per network namespace.

One directory per network namespace (`host`, `netns/NAME`: see host.netns_key) under
/var/lib/mplexctl (or $MPLEXCTL_STATE_DIR). A checkpoint is one file `ckpt-SEQ`: a one-line JSON
header, then the exact bytes of the configuration file applied. Every file is written whole
(write + fsync + rename), so a reader sees the old or the new one; a record that is torn
anyway (a disk error, a hand edit) is reported and skipped, never fatal. The newest KEEP are
kept. `pending.json` describes a change waiting for `mplexctl confirm` (engine/confirm.py).

History never writes maps: a rollback or revert hands a checkpoint's bytes to the ordinary
apply pipeline (materialized() gives them a path)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from mplexctl.backend import host
from mplexctl.errors import HostError

STATE_ENV = "MPLEXCTL_STATE_DIR"
STATE_ROOT = "/var/lib/mplexctl"
KEEP = 20
PREFIX = "ckpt-"
PENDING = "pending.json"
FORMAT = 1

# Checkpoint states, as `history` prints them (pending adds "until HH:MM:SS").
CONFIRMED = "confirmed"
PENDING_STATE = "pending"
REVERTED = "reverted"
ROLLED_BACK = "rolled back"


@dataclass(frozen=True)
class Origin:
    """Why an apply runs: the operator's `apply`, a `rollback`, the confirm window's `revert`,
    or the boot unit. `source` is the path history shows (the original file of a checkpoint
    that is re-applied); `of_seq` the checkpoint re-applied."""

    kind: str = "apply"
    source: str = ""
    of_seq: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    generation: str
    applied_at: float  # unix time
    source: str  # the file's path (absolute) when it was applied
    kind: str  # apply | rollback | revert | boot
    result: str  # verified | no changes | verification failed
    state: str  # confirmed | pending | reverted | rolled back
    sha256: str  # of the file's bytes
    size: int
    source_digest: str = ""  # salted digest, as the programs' metadata records it
    deadline: float | None = None  # pending: when the window ends (unix time)
    of_seq: int | None = None  # rollback / revert: the checkpoint re-applied
    path: str = field(default="", compare=False)

    def header(self) -> bytes:
        doc = {k: v for k, v in asdict(self).items() if k != "path"}
        doc["format"] = FORMAT
        return json.dumps(doc, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class Pending:
    """A change applied with --confirm-within and not confirmed yet."""

    token: str  # identifies the window (and its watchdog)
    seqs: tuple[int, ...]  # checkpoints that revert together (a --force apply stacks)
    target: int | None  # checkpoint to revert to; None: nothing was attached before
    reverts_to: str | None  # its generation
    deadline: float  # unix time
    boot_id: str  # a pending change from another boot is void: its watchdog is gone
    watchdog_pid: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seqs"] = list(self.seqs)
        return d


def state_root() -> str:
    return os.environ.get(STATE_ENV) or STATE_ROOT


def atomic_write(path: str, chunks: Iterable[bytes]) -> None:
    """Write a whole file: a temporary file beside it, fsync, rename over the old one."""
    tmp = f"{path}.tmp-{os.getpid()}"
    write_synced(tmp, chunks)
    os.rename(tmp, path)


def write_synced(tmp: str, chunks: Iterable[bytes]) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)


def _checkpoint(doc: Any, path: str) -> Checkpoint:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("not a checkpoint header of format 1")
    names = {f.name for f in fields(Checkpoint)} - {"path"}
    missing = {"seq", "generation", "applied_at", "sha256", "size", "state"} - doc.keys()
    if missing:
        raise ValueError("header lacks " + ", ".join(sorted(missing)))
    kept = {k: v for k, v in doc.items() if k in names}
    kept.setdefault("source", "")
    kept.setdefault("kind", "apply")
    kept.setdefault("result", "")
    return Checkpoint(**kept, path=path)


class Journal:
    """The checkpoints and the pending change of one network namespace."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.problems: list[str] = []
        self._list: list[Checkpoint] | None = None

    @classmethod
    def here(cls) -> Journal:
        """The journal of the network namespace this process is in."""
        return cls(os.path.join(state_root(), host.netns_key()))

    # --- reading ------------------------------------------------------------------------
    def _seqs(self) -> list[int]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise HostError(f"cannot read history in {self.dir}: {exc.strerror}") from None
        out = []
        for name in names:
            if name.startswith(PREFIX) and name[len(PREFIX) :].isdigit():
                out.append(int(name[len(PREFIX) :]))
        return sorted(out, reverse=True)

    def next_seq(self) -> int:
        seqs = self._seqs()
        return (seqs[0] + 1) if seqs else 1

    def _file(self, seq: int) -> str:
        return os.path.join(self.dir, f"{PREFIX}{seq:08d}")

    def _read(self, seq: int) -> Checkpoint | None:
        path = self._file(seq)
        try:
            with open(path, "rb") as fh:
                ck = _checkpoint(json.loads(fh.readline()), path)
                size = os.fstat(fh.fileno()).st_size - fh.tell()
            if ck.seq != seq:
                raise ValueError(f"header says sequence {ck.seq}")
            if size != ck.size:
                raise ValueError(f"{size} bytes of configuration, header says {ck.size}")
            return ck
        except FileNotFoundError:
            return None  # removed meanwhile (pruned)
        except (OSError, ValueError, TypeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            self.problems.append(f"{path}: unreadable checkpoint ({reason}): skipped")
            return None

    def checkpoints(self) -> list[Checkpoint]:
        """Every readable checkpoint, newest first; unreadable ones go to `problems`."""
        if self._list is None:
            self.problems.clear()
            self._list = [ck for ck in map(self._read, self._seqs()) if ck is not None]
        return self._list

    def newest(self) -> Checkpoint | None:
        """The newest readable checkpoint (reads only as far as it needs: a no-op apply asks)."""
        if self._list is not None:
            return self._list[0] if self._list else None
        for seq in self._seqs():
            ck = self._read(seq)
            if ck is not None:
                return ck
        return None

    def get(self, seq: int) -> Checkpoint | None:
        return next((c for c in self.checkpoints() if c.seq == seq), None)

    def body(self, ck: Checkpoint) -> bytes:
        """The configuration bytes of a checkpoint, checked against its digest."""
        try:
            with open(ck.path, "rb") as fh:
                fh.readline()
                raw = fh.read()
        except OSError as exc:
            raise HostError(f"checkpoint {ck.seq} ({ck.path}): {exc.strerror}") from None
        if hashlib.sha256(raw).hexdigest() != ck.sha256:
            raise HostError(f"checkpoint {ck.seq} ({ck.path}): its bytes do not match its digest")
        return raw

    @contextmanager
    def materialized(self, ck: Checkpoint) -> Iterator[str]:
        """A private file holding exactly the checkpoint's bytes, for the apply pipeline."""
        import shutil
        import tempfile

        raw = self.body(ck)
        os.makedirs(host.LOCK_DIR, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="checkpoint-", dir=host.LOCK_DIR)
        try:
            path = os.path.join(tmp, f"checkpoint-{ck.seq}.yaml")
            with open(path, "wb") as fh:
                fh.write(raw)
            yield path
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def live_checkpoint(self, generations: set[str]) -> Checkpoint | None:
        """The checkpoint the live state came from: the newest one of the live generation that
        was not reverted (None when nothing, or more than one generation, is live)."""
        if len(generations) != 1:
            return None
        (gen,) = generations
        same = [c for c in self.checkpoints() if c.generation == gen]
        kept = [c for c in same if c.state != REVERTED]
        best = kept or same
        return best[0] if best else None

    # --- writing (callers hold host.host_lock) ---------------------------------------------
    def record(
        self,
        raw: bytes,
        *,
        generation: str,
        source: str,
        source_digest: str,
        origin: Origin,
        result: str,
        state: str = CONFIRMED,
        deadline: float | None = None,
        applied_at: float | None = None,
        protect: Iterable[int] = (),
    ) -> Checkpoint:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        ck = self._new(
            raw,
            generation=generation,
            source=source,
            source_digest=source_digest,
            origin=origin,
            result=result,
            state=state,
            deadline=deadline,
            applied_at=applied_at,
        )
        atomic_write(ck.path, (ck.header(), raw))
        self._list = None
        self.prune(protect=protect)
        return ck

    def _new(
        self,
        raw: bytes,
        *,
        generation: str,
        source: str,
        source_digest: str,
        origin: Origin,
        result: str,
        state: str = CONFIRMED,
        deadline: float | None = None,
        applied_at: float | None = None,
    ) -> Checkpoint:
        seq = self.next_seq()
        return Checkpoint(
            seq=seq,
            generation=generation,
            applied_at=time.time() if applied_at is None else applied_at,
            source=origin.source or os.path.abspath(source),
            kind=origin.kind,
            result=result,
            state=state,
            sha256=hashlib.sha256(raw).hexdigest(),
            size=len(raw),
            source_digest=source_digest,
            deadline=deadline,
            of_seq=origin.of_seq,
            path=self._file(seq),
        )

    def draft(self, raw: bytes, **kw: Any) -> Draft:
        """Start writing the checkpoint record() would write (same arguments) in another
        thread, digest included, while the apply works on the kernel; commit() renames it
        into place."""
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        return Draft(self, self._new(b"", **kw), raw)

    def update(self, ck: Checkpoint, **changes: Any) -> Checkpoint:
        """Rewrite a checkpoint's header (its state), keeping its bytes."""
        new = replace(ck, **changes)
        atomic_write(ck.path, (new.header(), self.body(ck)))
        self._list = None
        return new

    def set_state(self, seqs: Iterable[int], state: str) -> None:
        for seq in seqs:
            ck = self.get(seq)
            if ck is not None and ck.state != state:
                self.update(ck, state=state, deadline=None)

    def prune(self, keep: int = KEEP, protect: Iterable[int] = ()) -> None:
        """Keep the newest `keep` checkpoints (and the protected ones); remove stale temporary
        files (every writer holds the lock, so any left over is from a crash)."""
        keepers = set(self._seqs()[:keep]) | set(protect)
        pending = self.pending()
        if pending is not None:
            keepers |= set(pending.seqs)
            if pending.target is not None:
                keepers.add(pending.target)
        for seq in self._seqs():
            if seq not in keepers:
                with suppress(FileNotFoundError):
                    os.unlink(self._file(seq))
        mine = f".tmp-{os.getpid()}"  # this process's own may be a draft being written
        for name in os.listdir(self.dir):
            if ".tmp-" in name and not name.endswith(mine):
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))
        self._list = None

    # --- the pending change ---------------------------------------------------------------
    @property
    def pending_path(self) -> str:
        return os.path.join(self.dir, PENDING)

    def pending(self) -> Pending | None:
        try:
            with open(self.pending_path, "rb") as fh:
                doc = json.loads(fh.read())
            return Pending(
                token=str(doc["token"]),
                seqs=tuple(int(s) for s in doc["seqs"]),
                target=None if doc["target"] is None else int(doc["target"]),
                reverts_to=doc.get("reverts_to"),
                deadline=float(doc["deadline"]),
                boot_id=str(doc.get("boot_id", "")),
                watchdog_pid=int(doc.get("watchdog_pid", 0)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            self.problems.append(f"{self.pending_path}: unreadable pending change ({reason})")
            return None

    def write_pending(self, p: Pending) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        atomic_write(self.pending_path, (json.dumps(p.as_dict(), sort_keys=True).encode(),))

    def clear_pending(self) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.pending_path)


class Draft:
    """A checkpoint being written and fsynced in another thread (the disk's fsync overlaps
    the apply's kernel work); commit() renames it into place, discard() drops it."""

    def __init__(self, journal: Journal, ck: Checkpoint, raw: bytes) -> None:
        self.journal, self.ck = journal, ck
        self.tmp = f"{ck.path}.tmp-{os.getpid()}"
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, args=(raw,), name="mplexctl-history")
        self._thread.start()

    def _write(self, raw: bytes) -> None:
        try:
            self.ck = replace(self.ck, sha256=sha256_of(raw), size=len(raw))
            write_synced(self.tmp, (self.ck.header(), raw))
        except BaseException as exc:  # handed over by commit()
            self._error = exc

    def commit(self) -> Checkpoint:
        self._thread.join()
        if self._error is not None:
            raise self._error
        os.rename(self.tmp, self.ck.path)
        self.journal._list = None
        self.journal.prune()
        return self.ck

    def discard(self) -> None:
        self._thread.join()
        with suppress(FileNotFoundError):
            os.unlink(self.tmp)


class Recorder:
    """What one apply writes to history: its file's bytes under the apply's outcome."""

    def __init__(
        self, journal: Journal, raw: bytes, path: str, source_digest: str, origin: Origin
    ) -> None:
        self.journal, self.raw = journal, raw
        self._draft: Draft | None = None
        self.notes: list[str] = []  # history that could not be written: the apply still stands
        self.fields: dict[str, Any] = {
            "source": path,
            "source_digest": source_digest,
            "origin": origin,
        }

    def _failed(self, exc: OSError | HostError) -> None:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        self.notes.append(f"warning: history not recorded in {self.journal.dir}: {why}")

    def unchanged(self, generation: str) -> None:
        """Nothing changed: record the file only when history does not end with it (the first
        apply after an upgrade, a comment-only edit); a no-op writes nothing."""
        try:
            newest = self.journal.newest()
        except HostError as exc:
            self._failed(exc)
            return
        src = self.fields["source_digest"]  # "" when the no-op accelerator is off
        same = newest is not None and (
            (src and newest.source_digest == src)
            or (newest.size == len(self.raw) and newest.sha256 == sha256_of(self.raw))
        )
        if not same:
            try:
                self.journal.record(
                    self.raw, generation=generation, result="no changes", **self.fields
                )
            except (OSError, HostError) as exc:
                self._failed(exc)

    def start(self, generation: str) -> None:
        """Write (and fsync) the checkpoint of a verified apply while the kernel work runs."""
        try:
            self._draft = self.journal.draft(
                self.raw, generation=generation, result="verified", **self.fields
            )
        except (OSError, HostError) as exc:
            self._failed(exc)

    def drop(self) -> None:
        if self._draft is not None:
            self._draft.discard()
            self._draft = None

    def verified(self, generation: str, pending: Pending | None) -> Checkpoint | None:
        """The checkpoint of a verified apply (None: it could not be written, see notes)."""
        try:
            if self._draft is not None and pending is None:
                return self._draft.commit()
            self.drop()
            if pending is None and self.notes:
                return None  # the draft already failed
            return self.journal.record(
                self.raw,
                generation=generation,
                result="verified",
                state=PENDING_STATE if pending else CONFIRMED,
                deadline=pending.deadline if pending else None,
                **self.fields,
            )
        except (OSError, HostError) as exc:
            self._failed(exc)
            return None

    def failed(self, generation: str) -> None:
        """The apply's verification failed: recorded as rolled back (it is, next)."""
        self.drop()
        try:
            self.journal.record(
                self.raw,
                generation=generation,
                result="verification failed",
                state=ROLLED_BACK,
                **self.fields,
            )
        except (OSError, HostError) as exc:
            self._failed(exc)


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
