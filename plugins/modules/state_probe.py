#!/usr/bin/python
# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: state_probe
short_description: Report which packages, files and systemd units are already as wanted, in one run
version_added: "0.1.0"
description:
  - Read-only. Looks at a list of Debian packages, paths and systemd units and reports
    which of them are already exactly as wanted. Changes nothing, in any mode.
  - Meant for the start of a role. Each builtin module run (M(ansible.builtin.template) is
    two of them) costs a Python start on the host, most of a re-run that changes nothing.
    The role asks this module once and skips the task of each resource listed in
    RV(in_place); every other task runs as usual, so a resource missing from the lists,
    or described differently from its task, only costs time, never a change left undone.
  - A file is in place when it is a regular file with the wanted SHA-1 checksum (the
    checksum M(ansible.builtin.copy) and M(ansible.builtin.template) compare), owner,
    group and mode. A directory when it is one with the wanted owner, group and mode. A
    link when it points to O(paths[].src). C(absent) when nothing is at the path.
  - A unit of O(units) is in place when its unit file state is exactly C(enabled) and it
    is C(active); a unit of O(enabled_units) when its unit file state is C(enabled).
  - When a package of O(packages) is not installed, no path or unit is reported in
    place, since installing a package may replace files and units.
author:
  - llmops maintainers (!UNKNOWN)
options:
  packages:
    description: Debian packages that should be installed.
    type: list
    elements: str
    default: []
  paths:
    description: Paths and how they should be.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path on the host.
        type: path
        required: true
      state:
        description: What should be at the path.
        type: str
        choices: [file, directory, link, absent]
        default: file
      checksum:
        description:
          - SHA-1 of the wanted content, required for C(file). On the controller, for a
            template, C(lookup('ansible.builtin.template', 'x.j2') | hash('sha1')).
          - Never shown in the task's output or logs (the file may hold secrets).
        type: str
      checksum_algorithm:
        description: Algorithm of O(paths[].checksum).
        type: str
        choices: [sha1, sha256]
        default: sha1
      owner:
        description: Owner name or uid; not compared when left out.
        type: str
      group:
        description: Group name or gid; not compared when left out.
        type: str
      mode:
        description: Octal mode such as C('0640'); not compared when left out.
        type: str
      src:
        description: Target of a C(link).
        type: str
  units:
    description: systemd units that should be enabled and running.
    type: list
    elements: str
    default: []
  enabled_units:
    description: systemd units that should be enabled (started or not).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads only, so it runs the same way in check mode.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: debian
notes:
  - A path entry that cannot be checked as written (a C(file) without O(paths[].checksum),
    a mode that is not octal) fails the task, naming the path.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: Find what is already in place (read-only)
  llmops.registry.state_probe:
    packages: [redis-server]
    paths:
      - path: /etc/redis/redis.conf
        checksum: "{{ lookup('ansible.builtin.template', 'redis.conf.j2') | hash('sha1') }}"
        owner: root
        group: redis
        mode: "0640"
    units: [redis-server]
  register: redis_probe

- name: Install Redis
  ansible.builtin.apt:
    name: redis-server
  when: redis_probe.missing_packages | length > 0

- name: Write redis.conf
  ansible.builtin.template:
    src: redis.conf.j2
    dest: /etc/redis/redis.conf
    owner: root
    group: redis
    mode: "0640"
  when: "'/etc/redis/redis.conf' not in redis_probe.in_place"
"""

RETURN = r"""
missing_packages:
  description: Packages of O(packages) that are not installed.
  returned: always
  type: list
  elements: str
  sample: []
in_place:
  description: Paths and units that are exactly as wanted.
  returned: always
  type: list
  elements: str
  sample: [/etc/redis/redis.conf, redis-server]
not_in_place:
  description: Paths and units asked about that are not (or could not be proven) as wanted.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - docs come first in modules
from ansible_collections.llmops.registry.plugins.module_utils.state_probe import (  # noqa: E402
    ProbeError,
    probe,
)

PATH_OPTIONS = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "choices": ["file", "directory", "link", "absent"], "default": "file"},
    # A file may hold secrets: its checksum is kept out of the output and logs.
    "checksum": {"type": "str", "no_log": True},
    "checksum_algorithm": {"type": "str", "choices": ["sha1", "sha256"], "default": "sha1"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "mode": {"type": "str"},
    "src": {"type": "str"},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "dict", "default": [], "options": PATH_OPTIONS},
            "units": {"type": "list", "elements": "str", "default": []},
            "enabled_units": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    try:
        result = probe(
            module.params["packages"],
            module.params["paths"],
            module.params["units"],
            lambda argv: module.run_command(argv, environ_update={"LC_ALL": "C"}),
            module.params["enabled_units"],
        )
    except ProbeError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
