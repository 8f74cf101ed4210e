#!/usr/bin/python
# SPDX-License-Identifier: GPL-2.0-only
"""Ansible module of the mplex role: a thin adapter over the mplexctl CLI's --json interface.

It never imports mplexctl (which lives in its own venv, maybe under another Python): it runs
`mplexctl apply|detach|status --json` and turns the JSON into a module result. Python 3.6+
(as ansible-core targets), standard library and ansible.module_utils only.
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: mplex_apply
short_description: Make a host's mplex XDP programs match an mplexctl configuration
description:
  - Runs C(mplexctl apply FILE --json) (C(--check) in check mode) and reports its plan,
    generation and the live state before and after.
  - I(changed) is true exactly when the plan is not empty.
  - In check mode nothing on the host is touched; with I(content) the plan is made for that
    content rather than for the file at I(path) (which check mode does not write).
  - With I(state=absent), runs C(mplexctl detach --json), which removes every mplex program
    (and no one else's).
  - Failures (invalid configuration, missing interface or namespace, a foreign XDP program,
    the kernel refusing) fail the task with mplexctl's own message and exit code.
options:
  state:
    description: C(present) applies the configuration; C(absent) detaches every mplex program.
    type: str
    choices: [present, absent]
    default: present
  path:
    description: The configuration file on the host. Required with I(state=present).
    type: path
  content:
    description:
      - The configuration's text. Used instead of I(path) in check mode, so that the plan is
        for the configuration about to be written.
    type: str
  bin:
    description: The mplexctl executable.
    type: path
    default: mplexctl
  netns:
    description: Named network namespace to operate in (C(mplexctl --netns)); empty for the host's.
    type: str
    default: ""
  force:
    description: Replace an XDP program that mplex did not attach (C(mplexctl apply --force)).
    type: bool
    default: false
  confirm_within:
    description:
      - Apply with C(mplexctl apply --confirm-within) (for example C(2m); 5s .. 1h). The
        change reverts itself on the host unless C(mplexctl confirm) runs within that time
        (the role's C(mplex_confirm) module does, after its health gate). Empty for none.
      - Ignored in check mode and when nothing changes.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Apply /etc/mplex/config.yaml
  mplex_apply:
    path: /etc/mplex/config.yaml
    bin: /opt/mplexctl/venv/bin/mplexctl

- name: Detach every mplex program in namespace blue
  mplex_apply:
    state: absent
    netns: blue
"""

RETURN = r"""
plan:
  description: The changes (each with interface, action, impact, detail); empty when none.
  type: list
  returned: state=present
generation:
  description: Generation (digest) of the applied or planned configuration.
  type: str
  returned: state=present
before:
  description: Live state before, as mplexctl reports it.
  type: dict
  returned: always
after:
  description: Live state after (the desired state in check mode).
  type: dict
  returned: always
verified:
  description: mplexctl re-probed the kernel after applying and found nothing left to do.
  type: bool
  returned: state=present
detached:
  description: Interfaces whose mplex program was (or, in check mode, would be) removed.
  type: list
  returned: state=absent
notes:
  description: mplexctl's notes (for example the XDP mode that auto resolved to).
  type: list
  returned: state=present
pending_until:
  description: With I(confirm_within), when the change reverts unless confirmed (unix time).
  type: float
  returned: state=present
reverts_to:
  description: With I(confirm_within), the generation it reverts to (null when that detaches).
  type: str
  returned: state=present
"""

ERROR_PREFIX = "mplexctl: error: "
ARGUMENT_SPEC = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "path": {"type": "path"},
    "content": {"type": "str"},
    "bin": {"type": "path", "default": "mplexctl"},
    "netns": {"type": "str", "default": ""},
    "force": {"type": "bool", "default": False},
    "confirm_within": {"type": "str", "default": ""},
}


class Mplexctl:
    """Runs one mplexctl binary, in one network namespace, with --json."""

    def __init__(self, module):
        self.module = module
        self.bin = module.params["bin"]
        self.netns = module.params["netns"] or ""
        self.tmp_path = None  # check mode: the temporary copy of `content` that is planned

    def run(self, verb, *args):
        argv = [self.bin, verb, "--json"]
        if self.netns:
            argv += ["--netns", self.netns]
        argv += list(args)
        rc, out, err = self.module.run_command(argv)
        data = None
        if out.strip():
            try:
                data = json.loads(out)
            except ValueError:
                data = None
        if rc != 0 or not isinstance(data, dict) or _failed(data):
            self.fail(argv, rc, data, out, err)
        for line in err.splitlines():
            if line.startswith("mplexctl: warning"):
                self.module.warn(line.strip())
        return data

    def fail(self, argv, rc, data, out, err):
        msg = data.get("msg") if isinstance(data, dict) else None
        if not msg:
            lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
            msg = "\n".join(
                ln[len(ERROR_PREFIX) :] if ln.startswith(ERROR_PREFIX) else ln for ln in lines
            )
        if not msg:
            msg = f"mplexctl exited with status {rc} and no message"
        exit_code = data.get("exit_code", rc) if isinstance(data, dict) else rc
        if self.tmp_path and self.module.params["path"]:
            # check mode plans a temporary copy: name the real file in messages
            msg = msg.replace(self.tmp_path, self.module.params["path"])
        self.module.fail_json(msg=msg, rc=rc, exit_code=exit_code, cmd=argv, stdout=out, stderr=err)


def _failed(data):
    return isinstance(data, dict) and bool(data.get("failed"))


def _diff_view(state, like=None):
    """The live/desired state as text for --diff: the routes, windows, tags and modes.

    The generation is left out (a digest of everything: it changes with any change, and the
    module returns it anyway). A desired "auto" mode is shown as the mode it resolved to live
    (`like`), so that an unchanged interface shows no difference.
    """
    interfaces = {}
    live = (like or {}).get("interfaces") or {}
    for name, st in ((state or {}).get("interfaces") or {}).items():
        st = dict(st or {})
        st.pop("generation", None)
        was = live.get(name) or {}
        if st.get("mode") == "auto" and was.get("mode"):
            st["mode"] = was["mode"]
        interfaces[name] = st
    return json.dumps({"interfaces": interfaces}, indent=2, sort_keys=True) + "\n"


def _where(netns):
    return f"netns {netns}" if netns else "host network namespace"


def apply_present(module, cli):
    path = module.params["path"]
    content = module.params["content"]
    if not path:
        module.fail_json(msg="path is required with state=present")
    args = []
    if module.check_mode:
        args.append("--check")
        if content is not None:
            fd, cli.tmp_path = tempfile.mkstemp(prefix="mplex-", suffix=".yaml", dir=module.tmpdir)
            with os.fdopen(fd, "w") as f:
                f.write(content)
    if module.params["force"]:
        args.append("--force")
    if module.params["confirm_within"] and not module.check_mode:
        args += ["--confirm-within", module.params["confirm_within"]]
    data = cli.run("apply", cli.tmp_path or path, *args)
    if not isinstance(data, dict):
        module.fail_json(msg="mplexctl apply --json printed no JSON object", stdout=data)
    plan = data.get("plan") or []
    before = data.get("before") or {}
    after = data.get("after") or {}
    result = {
        "changed": bool(plan),
        "plan": plan,
        "generation": data.get("generation"),
        "before": before,
        "after": after,
        "verified": bool(data.get("verified")),
        "notes": data.get("notes") or [],
        "pending_until": data.get("pending_until"),
        "reverts_to": data.get("reverts_to"),
    }
    if module._diff:
        result["diff"] = {
            "before": _diff_view(before),
            "after": _diff_view(after, like=before),
            "before_header": f"mplex live state ({_where(cli.netns)})",
            "after_header": "mplex {} state ({})".format(
                "desired" if module.check_mode else "live", _where(cli.netns)
            ),
        }
    module.exit_json(**result)


def apply_absent(module, cli):
    status = cli.run("status")
    rows = status.get("interfaces") if isinstance(status, dict) else None
    ours = []
    if isinstance(rows, list):
        ours = [
            r.get("interface") for r in rows if isinstance(r, dict) and r.get("owner") == "mplex"
        ]
    if module.check_mode:
        detached = ours
    else:
        data = cli.run("detach")
        detached = (data.get("detached") or []) if isinstance(data, dict) else []
    before = {"interfaces": {}}
    for r in rows if isinstance(rows, list) else []:
        if isinstance(r, dict) and r.get("interface") in detached:
            before["interfaces"][r["interface"]] = {
                "mode": r.get("mode"),
                "services": sorted((r.get("services") or {}).keys()),
            }
    after = {"interfaces": {}}
    result = {"changed": bool(detached), "detached": detached, "before": before, "after": after}
    if module._diff:
        result["diff"] = {
            "before": json.dumps(before, indent=2, sort_keys=True) + "\n",
            "after": json.dumps(after, indent=2, sort_keys=True) + "\n",
            "before_header": f"mplex programs ({_where(cli.netns)})",
            "after_header": f"mplex programs ({_where(cli.netns)})",
        }
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("state", "present", ("path",))],
        supports_check_mode=True,
    )
    binary = module.params["bin"]
    if os.sep in binary:
        found = binary if os.access(binary, os.X_OK) else None
    else:
        found = module.get_bin_path(binary)
    if not found:
        msg = f"mplexctl not found at {binary} (install it: mplex_install, or set mplex_bin)"
        if module.params["state"] == "absent":
            module.warn(msg + ": nothing detached")
            module.exit_json(changed=False, detached=[], before={}, after={})
        if module.check_mode:
            # a first run in check mode: the install tasks only pretended to install it
            module.warn(msg + ": cannot plan; the configuration would be applied")
            module.exit_json(changed=True, plan=[], generation=None, before={}, after={})
        module.fail_json(msg=msg)
    module.params["bin"] = found
    cli = Mplexctl(module)
    if module.params["state"] == "absent":
        apply_absent(module, cli)
    else:
        apply_present(module, cli)


if __name__ == "__main__":
    main()
