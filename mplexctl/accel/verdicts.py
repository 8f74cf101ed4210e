"""Accelerator for validation: digests of inputs jsonschema found valid (a cache, never truth).

Importing jsonschema is a large part of a one-route change, and an edited route table leaves
what jsonschema checks (everything but the routes, which a bulk check covers) unchanged. So
validation (`validate` and `apply` alike: config.parse_config) remembers, in /run (tmpfs: gone
at boot), the digest of each input that passed; the same input skips the import. A missing,
unreadable or unwritable directory only costs the import. The digest covers the schema text,
the validator's rules and mplexctl's version too (config/schema.py).
"""

from __future__ import annotations

import os

from mplexctl import accel

VERDICT_DIR = "/run/mplexctl/schema-valid"
KEEP = 64  # remembered inputs; the oldest are forgotten first


class SchemaVerdicts:
    def __init__(self, directory: str = VERDICT_DIR) -> None:
        self.directory = directory

    def known_valid(self, digest: str) -> bool:
        return os.path.exists(os.path.join(self.directory, digest))

    def remember_valid(self, digest: str) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            os.close(os.open(os.path.join(self.directory, digest), os.O_CREAT | os.O_WRONLY, 0o600))
            names = os.listdir(self.directory)
            if len(names) > KEEP:
                paths = [os.path.join(self.directory, n) for n in names]
                paths.sort(key=lambda p: os.stat(p).st_mtime_ns)
                for stale in paths[: len(paths) - KEEP]:
                    os.unlink(stale)
        except OSError:
            pass  # a cache: not being able to write it changes nothing


def store() -> SchemaVerdicts | None:
    """The store validation uses; None: not applicable (accelerators off)."""
    return SchemaVerdicts() if accel.enabled() else None
