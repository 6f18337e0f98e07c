#!/usr/bin/python
# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_switch
short_description: Pin registry instances to a release, restart them, wait until they serve it
version_added: "0.1.0"
description:
  - On a registry host, writes each instance's env file
    C(<config_dir>/instance-<name>.env) from the given text (the role renders it from its
    C(instance.env.j2) template, the one source of its content), restarts the units whose
    env file changed or that do not serve O(version) yet, then polls C(/ready) of every
    instance every O(interval) seconds until it answers 200 with O(version) in its JSON
    (the service reports its version on C(/ready)), or fails after O(timeout) naming the
    instance and what it last saw.
  - With O(parallel=true) all units that need it are restarted with one
    C(systemctl restart) and waited for together (the caller has taken them out of the
    load balancer); with O(parallel=false) one after the other, each ready before the
    next goes down.
  - Idempotent; an instance whose env file already pins the release and that serves it
    is not restarted (it must still be ready).
  - Refuses bad input before it writes anything; an env text that pins another release,
    a missing or unfinished release folder, duplicate names or ports, an unknown owner or
    group.
author:
  - llmops maintainers (!UNKNOWN)
options:
  instances:
    description: The instances to switch.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Instance name (C(a), C(b)); the unit is O(unit_template) with it.
        type: str
        required: true
      port:
        description: HTTP port of the instance on O(host).
        type: int
        required: true
      env:
        description:
          - Whole text of the instance's env file. Its C(SCHEMA_REGISTRY_RELEASE) line must
            point at the complete release folder of O(version).
        type: str
        required: true
  version:
    description: Release the instances must serve, for example V(1.2.3).
    type: str
    required: true
  config_dir:
    description: Folder of the instance env files.
    type: path
    default: /etc/schema-registry
  owner:
    description: Owner of the env files.
    type: str
    default: root
  group:
    description: Group of the env files (the service's group reads them).
    type: str
    default: schema-registry
  mode:
    description: Mode of the env files, as an octal string.
    type: str
    default: "0640"
  unit_template:
    description: systemd unit of an instance; C({name}) is replaced by its name.
    type: str
    default: "schema-registry@{name}.service"
  parallel:
    description: Restart every instance that needs it at once (one C(systemctl restart)).
    type: bool
    default: true
  timeout:
    description: Seconds to wait after a restart for an instance to serve O(version).
    type: float
    default: 90
  interval:
    description: Seconds between two polls of C(/ready).
    type: float
    default: 0.1
  host:
    description: Address the instances answer on, from the managed host.
    type: str
    default: 127.0.0.1
  point_current:
    description:
      - Root of a release tree (as managed by M(llmops.registry.release)). Once every
        instance serves O(version), point its C(current) at that release exactly as
        M(llmops.registry.rollback) does (history, rolled-back marker, lock), in the same
        round trip. Checked before anything is written; a refused rollback changes nothing.
      - When omitted, C(current) is left alone.
    type: path
  lock_timeout:
    description: With O(point_current), seconds to wait for another run's lock of the tree.
    type: float
    default: 60
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    details: >-
      Reports which env files would change and which units would restart; writes and
      restarts nothing.
  diff_mode:
    support: full
    details: Shows each env file before and after.
  platform:
    support: full
    platforms: posix
notes:
  - Needs systemd on the managed host. Only the Python standard library on the target.
seealso:
  - module: llmops.registry.release
  - module: llmops.registry.rollback
"""

EXAMPLES = r"""
- name: Switch both instances of this host at once (both drained in HAProxy first)
  llmops.registry.instance_switch:
    version: 1.4.0
    instances:
      - name: a
        port: 8081
        env: |
          SCHEMA_REGISTRY_RELEASE=/opt/schema-registry/releases/1.4.0
          SCHEMA_REGISTRY_CONFIG=/etc/schema-registry/config.yml
          SERVER_PORT=8081
          METRICS_PORT=9181
      - name: b
        port: 8082
        env: |
          SCHEMA_REGISTRY_RELEASE=/opt/schema-registry/releases/1.4.0
          SCHEMA_REGISTRY_CONFIG=/etc/schema-registry/config.yml
          SERVER_PORT=8082
          METRICS_PORT=9182
    timeout: 40
    # A rollback: current follows once both serve 1.4.0.
    point_current: /opt/schema-registry
  register: switch

- name: Show how long each instance took to serve the release
  ansible.builtin.debug:
    msg: "{{ switch.instances | map(attribute='ready_seconds') | list }}"
"""

RETURN = r"""
version:
  description: Release the instances serve.
  returned: always
  type: str
  sample: 1.4.0
restarted:
  description: Names of the instances that were (or in check mode would be) restarted.
  returned: always
  type: list
  elements: str
  sample: [a, b]
seconds:
  description: Wall time from the first write to the last instance ready (0 in check mode).
  returned: always
  type: float
  sample: 1.42
current:
  description: >-
    With O(point_current), what the rollback of C(current) did (as
    M(llmops.registry.rollback) returns it).
  returned: when O(point_current) is set
  type: dict
  sample: {changed: true, version: 1.4.0, rolled_back_from: 1.5.0, active: 1.4.0, previous: 1.3.0}
instances:
  description: Per instance, what was done and how long it took.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Instance name.
      type: str
      sample: a
    port:
      description: Its HTTP port.
      type: int
      sample: 8081
    unit:
      description: Its systemd unit.
      type: str
      sample: schema-registry@a.service
    env_file:
      description: Its env file.
      type: str
      sample: /etc/schema-registry/instance-a.env
    env_changed:
      description: Whether the env file's text changed.
      type: bool
      sample: true
    served_before:
      description: Version its C(/ready) reported before the run, or null when it did not answer.
      type: str
      sample: 1.3.0
    restarted:
      description: Whether it was restarted.
      type: bool
      sample: true
    restart_seconds:
      description: >-
        Seconds the C(systemctl restart) call took (shared by a parallel restart), or null.
      type: float
      sample: 0.61
    ready_seconds:
      description: >-
        Seconds from its restart (or from the first poll when not restarted) until it
        served the release, or null.
      type: float
      sample: 1.18
    polls:
      description: How many times C(/ready) was asked.
      type: int
      sample: 12
"""

import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - docs come first in modules
from ansible_collections.llmops.registry.plugins.module_utils.instance_switch import (  # noqa: E402
    switch_host,
)
from ansible_collections.llmops.registry.plugins.module_utils.release_actions import (  # noqa: E402
    finish_module,
)


def _switch_with_file_attributes(module: AnsibleModule):
    """switch_host, then the common file arguments (SELinux context, attributes; owner,
    group and mode are this module's own options and already applied) on each env file."""

    def action(**kwargs):
        result = switch_host(**kwargs)
        changed = result["changed"]
        for instance in module.params["instances"]:
            path = os.path.join(module.params["config_dir"], f"instance-{instance['name']}.env")
            if os.path.exists(path):  # in check mode a new env file is not written
                file_args = module.load_file_common_arguments(module.params, path=path)
                changed = module.set_fs_attributes_if_different(file_args, changed)
        result["changed"] = changed
        return result

    return action


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "instances": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "port": {"type": "int", "required": True},
                    "env": {"type": "str", "required": True},
                },
            },
            "version": {"type": "str", "required": True},
            "config_dir": {"type": "path", "default": "/etc/schema-registry"},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "schema-registry"},
            "mode": {"type": "str", "default": "0640"},
            "unit_template": {"type": "str", "default": "schema-registry@{name}.service"},
            "parallel": {"type": "bool", "default": True},
            "timeout": {"type": "float", "default": 90},
            "interval": {"type": "float", "default": 0.1},
            "host": {"type": "str", "default": "127.0.0.1"},
            "point_current": {"type": "path"},
            "lock_timeout": {"type": "float", "default": 60},
        },
        supports_check_mode=True,
        add_file_common_args=True,
    )
    params = module.params
    try:
        mode = int(params["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"mode {params['mode']!r} is not an octal number such as 0640")
    finish_module(
        module,
        _switch_with_file_attributes(module),
        "instance switch",
        point_current=params["point_current"],
        lock_timeout=params["lock_timeout"],
        instances=params["instances"],
        version=params["version"],
        config_dir=params["config_dir"],
        owner=params["owner"],
        group=params["group"],
        mode=mode,
        unit_template=params["unit_template"],
        parallel=params["parallel"],
        timeout=params["timeout"],
        interval=params["interval"],
        host=params["host"],
    )


if __name__ == "__main__":
    main()
