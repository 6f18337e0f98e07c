#!/usr/bin/python
# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: haproxy_servers
short_description: Drain or enable several HAProxy servers in one call, after a capacity check
version_added: "0.1.0"
description:
  - Talks to HAProxy's admin socket on the load balancer. With O(state=drained) every
    server in O(servers) gets no new requests (C(DRAIN)), the module waits until their
    running requests have finished and puts them into maintenance (C(MAINT)). With
    O(state=enabled) it puts them back (C(ready)) and waits until HAProxy's health check
    shows each C(UP).
  - With O(min_others_up), a drain happens only when at least that many other servers of
    the backend are C(UP) right now; otherwise nothing changes and RV(acted) is false, so
    the caller can take a gentler path. The check and the drain are one round trip.
  - Unlike M(community.general.haproxy), which changes one server per call, all servers
    are handled together.
  - Fails before it changes anything when the socket, the backend or a server does not
    exist.
author:
  - llmops maintainers (!UNKNOWN)
options:
  socket:
    description: HAProxy admin socket (C(stats socket ... level admin)).
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: Backend of the servers.
    type: str
    required: true
  servers:
    description: Server names in the backend.
    type: list
    elements: str
    required: true
  state:
    description: C(drained) ends in C(MAINT) with no running request, C(enabled) in C(UP).
    type: str
    required: true
    choices: [drained, enabled]
  min_others_up:
    description:
      - Only for O(state=drained). How many servers of the backend outside O(servers) must
        be C(UP) for the drain to happen.
    type: int
    default: 0
  health_up:
    description:
      - Only for O(state=enabled). Mark the servers' health UP right away instead of waiting
        for HAProxy's next health checks, for a caller that has just checked the servers
        itself. HAProxy's checks go on and take a failing server out again.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for each phase (requests finished, state reached).
    type: float
    default: 30
  interval:
    description: Seconds between two looks at C(show stat) while waiting.
    type: float
    default: 0.1
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the states and reports what would change; sends no change to HAProxy.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
seealso:
  - module: community.general.haproxy
  - module: llmops.registry.instance_switch
"""

EXAMPLES = r"""
- name: Take both instances of registry1 out, only while another server is UP
  llmops.registry.haproxy_servers:
    backend: schema_registry
    servers: [registry1_a, registry1_b]
    state: drained
    min_others_up: 1
  delegate_to: lb1
  register: drain

- name: Put them back and wait until they are UP
  llmops.registry.haproxy_servers:
    backend: schema_registry
    servers: [registry1_a, registry1_b]
    state: enabled
    # The instances were just seen ready on /ready: no wait for HAProxy's next check.
    health_up: true
  delegate_to: lb1
  when: drain.acted
"""

RETURN = r"""
backend:
  description: The backend.
  returned: always
  type: str
  sample: schema_registry
acted:
  description: >-
    False when a drain was skipped because fewer than O(min_others_up) other servers
    were C(UP).
  returned: always
  type: bool
  sample: true
others_up:
  description: Servers of the backend outside O(servers) that were C(UP) before the run.
  returned: always
  type: list
  elements: str
  sample: [registry2_a, registry2_b]
servers:
  description: Each server's status before and after.
  returned: always
  type: list
  elements: dict
  sample: [{name: registry1_a, status_before: UP, status_after: MAINT}]
seconds:
  description: Seconds from the first change to the last server in its final state.
  returned: always
  type: float
  sample: 0.21
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - docs come first in modules
from ansible_collections.llmops.registry.plugins.module_utils.haproxy_admin import (  # noqa: E402
    HaproxyError,
    set_servers,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "backend": {"type": "str", "required": True},
            "servers": {"type": "list", "elements": "str", "required": True},
            "state": {"type": "str", "required": True, "choices": ["drained", "enabled"]},
            "min_others_up": {"type": "int", "default": 0},
            "health_up": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 30},
            "interval": {"type": "float", "default": 0.1},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = set_servers(
            socket_path=params["socket"],
            backend=params["backend"],
            servers=params["servers"],
            state=params["state"],
            min_others_up=params["min_others_up"],
            health_up=params["health_up"],
            timeout=params["timeout"],
            interval=params["interval"],
            check_mode=module.check_mode,
        )
    except HaproxyError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
