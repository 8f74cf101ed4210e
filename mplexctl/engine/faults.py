"""Test hooks that damage live state at a named point of an apply (never set in production).

MPLEXCTL_FAULT_DRIFT_AT=before-verify: just before the verifying re-probe, delete one route
entry of the first mplex program, as a concurrent writer would. The re-probe must catch it
(and apply must roll back). Fires once per process, so the rollback's own apply is clean."""

from __future__ import annotations

import os

DRIFT_ENV = "MPLEXCTL_FAULT_DRIFT_AT"
_fired: set[str] = set()


def drift_point(name: str) -> None:
    if os.environ.get(DRIFT_ENV) != name or name in _fired:
        return
    _fired.add(name)
    from mplexctl.backend import netlink
    from mplexctl.backend.program import ProgramMaps

    for link in netlink.list_links():
        pm = ProgramMaps.open(link.prog_id) if link.prog_id else None
        if pm is None:
            continue
        try:
            dump = pm.route_dump()
            for prefix in dump.prefixes():
                for i in dump.indexes(prefix):
                    pm.delete_routes([dump.key_of(i)])
                    return
        finally:
            pm.close()
