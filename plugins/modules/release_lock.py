#!/usr/bin/python
# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_lock
short_description: The run lock that keeps two releases or rollbacks from overlapping
version_added: "0.2.0"
description:
  - C(playbooks/release.yml) and C(playbooks/rollback.yml) hold this lock for their whole
    run, on every registry host (C(<path>/run-lock.json)). A second run is refused at
    once; the message names the holder (run id, playbook, when, user, controller host
    and its ansible-playbook pid).
  - O(state=controller) runs on the controller (delegated to C(localhost)). It describes
    this run (the ansible-playbook process above the module) and says which of the
    O(holders) are provably dead, that is ran on this controller (same host name and
    machine id) and whose process is gone (the controller rebooted since, or the pid
    is gone or reused). Their locks are taken over without asking.
  - O(state=acquired) takes the lock for O(holder) on a registry host; it fails while
    another run holds it unless that run's id is in O(steal).
  - O(state=released) drops the lock when O(holder)'s run holds it, and nothing else.
  - O(state=query) only reads the lock.
author:
  - llmops maintainers (!UNKNOWN)
options:
  state:
    description: What to do (see the description).
    type: str
    choices: [controller, query, acquired, released]
    default: query
  playbook:
    description: Name of the playbook, recorded in the holder (O(state=controller)).
    type: str
    default: ""
  holders:
    description: Holders read from the hosts with O(state=query), judged on the controller.
    type: list
    elements: raw
    default: []
  holder:
    description:
      - The holder record O(state=controller) returned.
      - Required with O(state=acquired) and O(state=released).
    type: dict
  steal:
    description: Run ids whose locks may be taken over (dead holders, C(force_unlock)).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - llmops.registry.release_tree
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the lock would be taken; a held lock still fails.
  diff_mode:
    support: none
seealso:
  - module: llmops.registry.release
  - module: llmops.registry.rollback
"""

EXAMPLES = r"""
- name: Who runs, and which old holders are dead
  llmops.registry.release_lock:
    state: controller
    playbook: release.yml
    holders: "{{ ansible_play_hosts | map('extract', hostvars, ['lock_q', 'holder']) | list }}"
  delegate_to: localhost
  run_once: true
  register: run_lock_me

- name: Take the lock on every registry host
  llmops.registry.release_lock:
    state: acquired
    holder: "{{ run_lock_me.holder }}"
    steal: "{{ run_lock_me.dead }}"
"""

RETURN = r"""
holder:
  description: The holder after the run (null when free); for O(state=controller), this run.
  returned: always
  type: dict
  sample:
    run_id: ctl1-4242-91234
    playbook: release.yml
    user: ops
    controller: ctl1
    pid: 4242
    started_at: "2026-12-04T15:30:00Z"
dead:
  description: Run ids among O(holders) that provably no longer run (O(state=controller)).
  returned: when state is controller
  type: list
  elements: str
replaced:
  description: The holder whose lock O(state=acquired) took over, or null.
  returned: when state is acquired
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - docs come first in modules
from ansible_collections.llmops.registry.plugins.module_utils.release_lock import (  # noqa: E402
    RunLock,
    describe_controller,
    holder_is_dead,
)
from ansible_collections.llmops.registry.plugins.module_utils.releases import (  # noqa: E402
    RELEASE_TREE_ARGS,
    ReleaseError,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {
                "type": "str",
                "choices": ["controller", "query", "acquired", "released"],
                "default": "query",
            },
            **RELEASE_TREE_ARGS,
            "playbook": {"type": "str", "default": ""},
            "holders": {"type": "list", "elements": "raw", "default": []},
            "holder": {"type": "dict"},
            "steal": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[("state", "acquired", ["holder"]), ("state", "released", ["holder"])],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "controller":
            me = describe_controller(p["playbook"])
            dead = sorted(
                {
                    str(h["run_id"])
                    for h in p["holders"]
                    if isinstance(h, dict) and h.get("run_id") and holder_is_dead(h)
                }
            )
            module.exit_json(changed=False, holder=me, dead=dead)
        lock = RunLock(p["path"])
        if p["state"] == "query":
            module.exit_json(changed=False, holder=lock.holder())
        if p["state"] == "acquired":
            result = lock.acquire(p["holder"], p["steal"], check_mode=module.check_mode)
        else:
            result = lock.release(str(p["holder"].get("run_id", "")), module.check_mode)
    except ReleaseError as exc:
        module.fail_json(msg=str(exc), holder=RunLock(p["path"]).holder())
    except OSError as exc:
        module.fail_json(msg=f"run lock {p['state']} failed: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
