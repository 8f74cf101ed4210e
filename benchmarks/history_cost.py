"""What recording history costs an apply (part 4, control): issue #13's target is at most
5 ms per apply. Measured inside one process in the lab's namespace (real applies through
engine.apply, 10 and 65,536 routes), against a state directory on the filesystem of /var/lib
(the production default): the time the apply's own thread spends in history's calls (find
the namespace's directory, look for a pending window, draft and commit the checkpoint, or,
for a no-op, read the newest header). A changing apply writes and fsyncs its checkpoint in
another thread while the kernel work runs; for comparison, the same record written
synchronously (the fsync is this shared VM disk's). Plus the check every verb makes first."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks import configs

CODE = r"""
import json, os, sys, time
from statistics import median
from mplexctl.backend.host import enter_netns
from mplexctl.engine import apply as engine, confirm, history

enter_netns(sys.argv[1])
reps = int(sys.argv[2])
spent = [0.0]


def timed(owner, name):
    fn = getattr(owner, name)

    def wrapper(*args, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            spent[-1] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


# everything an apply does for history: find the namespace's directory, look for a pending
# window, draft/commit (or record) the checkpoint, or check that a no-op needs nothing
for name in ("start", "verified", "unchanged", "drop"):
    timed(history.Recorder, name)
timed(history.Journal, "here")
timed(confirm, "refuse_stacking")
out = {}
for base, one in zip(sys.argv[3::2], sys.argv[4::2]):
    n = os.path.basename(base).split("-")[1].split(".")[0]
    engine.apply(base)  # cold (not measured)
    change, noop, sync = [], [], []
    for i in range(reps):
        spent.append(0.0)
        assert engine.apply(one if i % 2 == 0 else base).changed
        change.append(spent[-1])
        spent.append(0.0)
        assert not engine.apply(one if i % 2 == 0 else base).changed
        noop.append(spent[-1])
    journal = history.Journal.here()
    raw = open(base, "rb").read()
    for i in range(reps):  # for comparison: the same record written synchronously
        t0 = time.perf_counter()
        journal.record(raw, generation="0" * 12, source=base, source_digest="x",
                       origin=history.Origin(), result="verified")
        sync.append(time.perf_counter() - t0)
    verb = []
    for _ in range(200):  # what every verb pays: the expired-window check
        t0 = time.perf_counter()
        confirm.settle()
        verb.append(time.perf_counter() - t0)
    out[n] = {"change": median(change), "noop": median(noop), "sync": median(sync),
              "verb": median(verb)}
print(json.dumps(out))
"""


@contextmanager
def state_dir() -> Iterator[str]:
    """A scratch state directory beside /var/lib/mplexctl (same filesystem), set for every
    mplexctl the control part runs, removed afterwards."""
    path = tempfile.mkdtemp(prefix="mplexctl-bench-", dir="/var/lib")
    old = os.environ.get("MPLEXCTL_STATE_DIR")
    os.environ["MPLEXCTL_STATE_DIR"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("MPLEXCTL_STATE_DIR", None)
        else:
            os.environ["MPLEXCTL_STATE_DIR"] = old
        shutil.rmtree(path, ignore_errors=True)


def measure(ns: str, dev: str, workdir: str, reps: int) -> dict[str, dict[str, float]]:
    """Per size: median seconds history adds to a one-route change and to a no-op apply (in
    the apply's own thread), a synchronous record for comparison, and every verb's check."""
    paths = []
    for n in (10, 65_536):
        for name, first in (("base", 5001), ("one", 5101)):
            path = os.path.join(workdir, f"history-{n}-{name}.yaml")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(configs.config_text(dev, n, first_port=first))
            paths.append(path)
    r = subprocess.run(
        [sys.executable, "-c", CODE, ns, str(reps), *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    doc: dict[str, dict[str, float]] = json.loads(r.stdout)
    return doc
