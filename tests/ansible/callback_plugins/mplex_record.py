"""Records every task result and the per-host stats of a playbook run as one JSON file.

ansible-core ships no JSON stdout callback, so the role's test enables this one beside the
default (human) output: ANSIBLE_CALLBACKS_ENABLED=mplex_record, MPLEX_RECORD=<file>.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: mplex_record
type: aggregate
short_description: write task results and stats to the JSON file named by MPLEX_RECORD
description: Test helper of the mplex role.
"""


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mplex_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.results: list[dict[str, Any]] = []

    def _record(self, result: Any, status: str) -> None:
        res = getattr(result, "result", None)
        if not isinstance(res, dict):
            res = result._result
        task = getattr(result, "task", None) or result._task
        host = getattr(result, "host", None) or result._host
        self.results.append(
            {
                "host": host.get_name(),
                "task": task.name or task.get_name(),
                "action": task.action,
                "status": status,
                "changed": bool(res.get("changed")),
                "result": json.loads(json.dumps(res, default=str)),
            }
        )

    def v2_runner_on_ok(self, result: Any) -> None:
        self._record(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        out = {
            "stats": {h: stats.summarize(h) for h in sorted(stats.processed)},
            "results": self.results,
        }
        with open(os.environ["MPLEX_RECORD"], "w") as f:
            json.dump(out, f, indent=1, default=str)
