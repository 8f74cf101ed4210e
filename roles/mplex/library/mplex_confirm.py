#!/usr/bin/python
# SPDX-License-Identifier: GPL-2.0-only
"""Ansible module of the mplex role: the health gate after an apply, then `mplexctl confirm`
or `mplexctl rollback`. A thin adapter over `mplexctl status|confirm|rollback --json`, like
mplex_apply: it never imports mplexctl. Python 3.6+, standard library and ansible.module_utils.
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mplex_confirm
short_description: Watch an mplex change's drop ratio, then confirm it or roll it back
description:
  - Without I(health.max_drop_ratio), runs C(mplexctl confirm --json), so that a change applied with
    C(mplexctl apply --confirm-within) is kept.
  - With it, reads the service counters (C(mplexctl status --json)) twice, I(health.observe)
    seconds apart; the share of service packets dropped in between (verdicts C(drop_*) over
    all service packets, every mplex interface) decides. At most I(health.max_drop_ratio),
    C(mplexctl confirm). More, C(mplexctl rollback --json) at once (the pending window's
    previous generation, or the checkpoint before the live one) and the task fails with the
    measured ratio. With fewer than I(health.min_packets) service packets there is nothing to judge; the
    gate passes with a warning.
  - If the controller loses the host before this module runs, a change applied with
    C(--confirm-within) reverts itself on the host.
options:
  bin:
    description: The mplexctl executable.
    type: path
    default: mplexctl
  netns:
    description: Named network namespace to operate in (C(mplexctl --netns)); empty for the host's.
    type: str
    default: ""
  health:
    description: The gate; empty or without I(max_drop_ratio) for none (confirm at once).
    type: dict
    default: {}
    suboptions:
      observe:
        description: Seconds to watch the counters.
        type: int
        default: 10
      max_drop_ratio:
        description: Highest acceptable share of service packets dropped (0 .. 1).
        type: float
      min_packets:
        description: Below this many service packets in the window the gate passes with a warning.
        type: int
        default: 0
  expect_pending:
    description:
      - A change is expected to be pending (it was applied with C(--confirm-within)). When
        there is none to confirm (the window ended during the observation), the task fails.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Watch for 10 s, then confirm or roll back
  mplex_confirm:
    bin: /opt/mplexctl/venv/bin/mplexctl
    health: {observe: 10, max_drop_ratio: 0.05, min_packets: 100}
    expect_pending: true
"""

RETURN = r"""
confirmed:
  description: Checkpoints confirmed (empty when none was pending).
  type: list
  returned: success
generation:
  description: The generation confirmed, or (when the gate failed) rolled back to.
  type: str
  returned: always
health:
  description: What the gate measured (packets, dropped, ratio, observe, passed), when it ran.
  type: dict
  returned: when health.max_drop_ratio is set
rolled_back:
  description: The gate failed and the change was rolled back.
  type: bool
  returned: always
"""

ERROR_PREFIX = "mplexctl: error: "
HEALTH_SPEC = {
    "observe": {"type": "int", "default": 10},
    "max_drop_ratio": {"type": "float"},
    "min_packets": {"type": "int", "default": 0},
}
ARGUMENT_SPEC = {
    "bin": {"type": "path", "default": "mplexctl"},
    "netns": {"type": "str", "default": ""},
    "health": {"type": "dict", "default": {}, "options": HEALTH_SPEC},
    "expect_pending": {"type": "bool", "default": False},
}


def run(module, verb):
    argv = [module.params["bin"], verb, "--json"]
    if module.params["netns"]:
        argv += ["--netns", module.params["netns"]]
    rc, out, err = module.run_command(argv)
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    failed = isinstance(data, dict) and data.get("failed")
    if rc != 0 or data is None or failed:
        msg = data.get("msg") if isinstance(data, dict) else None
        if not msg:
            lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
            msg = "\n".join(
                ln[len(ERROR_PREFIX) :] if ln.startswith(ERROR_PREFIX) else ln for ln in lines
            )
        module.fail_json(
            msg=msg or f"mplexctl exited with status {rc}", rc=rc, cmd=argv, stdout=out, stderr=err
        )
    return data


def counters(doc):
    """Service packets per (interface, program, service, verdict) of every mplex program."""
    rows = doc.get("interfaces") if isinstance(doc, dict) else doc  # status --json
    out = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or row.get("owner") != "mplex":
            continue
        for name, svc in (row.get("services") or {}).items():
            for verdict, c in ((svc or {}).get("verdicts") or {}).items():
                key = (row.get("interface"), row.get("prog_id"), name, verdict)
                out[key] = int((c or {}).get("packets", 0))
    return out


def measure(before, after):
    """(service packets, dropped) between two samples; a new program's counters start at 0."""
    total = dropped = 0
    for key, n in after.items():
        d = n - before.get(key, 0)
        d = n if d < 0 else d
        total += d
        if str(key[3]).startswith("drop"):
            dropped += d
    return total, dropped


def gate(module, health):
    observe = max(0, health["observe"])
    before = counters(run(module, "status"))
    time.sleep(observe)
    total, dropped = measure(before, counters(run(module, "status")))
    ratio = (dropped / total) if total else 0.0
    result = {"packets": total, "dropped": dropped, "ratio": round(ratio, 4), "observe": observe}
    if total < health["min_packets"]:
        module.warn(
            f"only {total} service packets in {observe} s (min_packets {health['min_packets']}): "
            "no traffic to judge, the health gate passes"
        )
        result["passed"] = True
    else:
        result["passed"] = ratio <= health["max_drop_ratio"]
    return result


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.check_mode:
        module.exit_json(changed=False, confirmed=[], generation=None, rolled_back=False)
    health = module.params["health"] or {}
    measured = None
    if health.get("max_drop_ratio") is not None:
        measured = gate(module, health)
        if not measured["passed"]:
            back = run(module, "rollback")
            to = (back.get("rolled_back_to") or {}).get("generation")
            module.fail_json(
                msg=(
                    f"health gate failed: {measured['dropped']} of {measured['packets']} service "
                    f"packets dropped in {measured['observe']} s (ratio {measured['ratio']:.3f} > "
                    f"max_drop_ratio {health['max_drop_ratio']}); rolled back to "
                    f"{('generation ' + to) if to else 'no mplex program (detached)'}"
                ),
                changed=True,
                rolled_back=True,
                generation=to,
                health=measured,
            )
    data = run(module, "confirm")
    confirmed = data.get("confirmed") or []
    if module.params["expect_pending"] and not confirmed:
        module.fail_json(
            msg=f"nothing was confirmed: {data.get('message')}", rolled_back=False, health=measured
        )
    result = {
        "changed": bool(confirmed),
        "confirmed": confirmed,
        "generation": data.get("generation"),
        "rolled_back": False,
    }
    if measured is not None:
        result["health"] = measured
    module.exit_json(**result)


if __name__ == "__main__":
    main()
