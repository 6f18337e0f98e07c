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
  - O(templates) takes the list a role also loops its M(ansible.builtin.template) task
    over. The action plugin renders each template on the controller as that task does
    (same search path and variables) and compares the host's file with the result, so
    one list describes each file once, for the probe and for the task. O(copies) does
    the same for a looped M(ansible.builtin.copy) task of files from the controller.
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
      owner: &owner
        description: Owner name or uid; not compared when left out.
        type: str
      group: &group
        description: Group name or gid; not compared when left out.
        type: str
      mode: &mode
        description: Octal mode such as C('0640'); not compared when left out.
        type: str
      src:
        description: Target of a C(link).
        type: str
  templates:
    description:
      - Files written by M(ansible.builtin.template) from the role's templates, each
        compared like a O(paths) entry of state C(file) whose checksum is the SHA-1 of
        the rendered template. Rendered on the controller by the action plugin.
      - The role loops its one template task over the same list (C(src), C(dest),
        C(owner), C(group), C(mode), C(validate), C(notify)), skipping the entries in
        RV(in_place).
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: >-
          Template, found the way M(ansible.builtin.template) finds its C(src) (the
          role's C(templates/) first).
        type: str
        required: true
      dest: &dest
        description: >-
          Absolute path of the file on the host (not a folder); the name reported in
          RV(in_place).
        type: path
        required: true
      owner: *owner
      group: *group
      mode: *mode
      validate:
        description: For the writing task only (its C(validate)); not used by the probe.
        type: str
      vars:
        description:
          - Extra template variables for this entry, as the writing task gives them with
            its C(vars) (for one template written once per instance, say).
          - >-
            The task names them itself (C(vars) of a task cannot come from the loop item),
            for example C(vars: {app_instance: "{{ item.vars.app_instance }}"}).
        type: dict
      secret: &secret
        description: >-
          For the writing task only (C(no_log) when the file holds secrets); not used
          by the probe.
        type: bool
        default: false
      notify: &notify
        description: >-
          For the writing task only (the handlers a change of this file notifies); not
          used by the probe.
        type: list
        elements: str
  copies:
    description:
      - Files written by M(ansible.builtin.copy) from the controller, each compared like a
        O(paths) entry of state C(file) whose checksum is the SHA-1 of the controller's
        file. Read on the controller by the action plugin (a vault-encrypted file
        decrypted, as the copy action does).
      - The role loops its one copy task over the same list, skipping the entries in
        RV(in_place).
    type: list
    elements: dict
    default: []
    suboptions:
      src:
        description: >-
          File on the controller, found the way M(ansible.builtin.copy) finds its C(src)
          (the role's C(files/) first, or an absolute path). A file, not a folder.
        type: str
        required: true
      dest: *dest
      owner: *owner
      group: *group
      mode: *mode
      secret: *secret
      notify: *notify
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
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: >-
      The action plugin renders O(templates) and reads O(copies) on the controller,
      then runs the module on the host.
  async:
    support: none
  bypass_host_loop:
    support: none
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
    a mode that is not octal) fails the task, naming the path; so does a O(templates)
    or O(copies) entry without C(src) or C(dest), with an unknown key, or whose template
    or file is not found.
  - The checksums and rendered templates never appear in the output; C(-v) shows the
    paths and units checked in RV(in_place) and RV(not_in_place).
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
# One list per role (vars/main.yml) drives both the probe and the writing task.
# __redis_files:
#   - {src: redis.conf.j2, dest: /etc/redis/redis.conf, owner: root, group: redis, mode: "0640"}
#   - {src: users.acl.j2, dest: /etc/redis/users.acl, owner: root, group: redis, mode: "0640",
#      secret: true}
- name: Find what is already in place (read-only)
  llmops.registry.state_probe:
    packages: [redis-server]
    templates: "{{ __redis_files }}"
    units: [redis-server]
  register: redis_probe

- name: Install Redis
  ansible.builtin.apt:
    name: redis-server
  when: redis_probe.missing_packages | length > 0

- name: Write the configuration files
  ansible.builtin.template:
    src: "{{ item.src }}"
    dest: "{{ item.dest }}"
    owner: "{{ item.owner }}"
    group: "{{ item.group }}"
    mode: "{{ item.mode }}"
    validate: "{{ item.validate | default(omit) }}"
  loop: "{{ __redis_files }}"
  loop_control:
    label: "{{ item.dest }}"
  no_log: "{{ item.secret | default(false) }}"
  when: item.dest not in redis_probe.in_place

# Files copied from the controller: one list (vars/main.yml) for the probe and a copy
# task looped like the template task above (src, dest, owner, group, mode).
# __app_copies:
#   - {src: check.sh, dest: /usr/local/sbin/app-check, owner: root, group: root, mode: "0755"}
- name: Find what is already in place (read-only, copies entries)
  llmops.registry.state_probe:
    copies: "{{ __app_copies }}"
  register: app_probe

# A file that is not a template (here: copied from a variable) is a paths entry with
# the checksum of its content; a folder, a link or a path that must be gone likewise.
- name: Find what is already in place (read-only, paths entries)
  llmops.registry.state_probe:
    paths:
      - path: /etc/llmops/web.yml
        checksum: "{{ web_config | hash('sha1') }}"
        owner: root
        group: prometheus
        mode: "0640"
      - path: /etc/systemd/system/app.service.d
        state: directory
      - path: /etc/systemd/system/app.service.d/old.conf
        state: absent
  register: web_probe

- name: Write the web config
  ansible.builtin.copy:
    content: "{{ web_config }}"
    dest: /etc/llmops/web.yml
    owner: root
    group: prometheus
    mode: "0640"
  when: "'/etc/llmops/web.yml' not in web_probe.in_place"
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

ATTRIBUTE_OPTIONS = {"owner": {"type": "str"}, "group": {"type": "str"}, "mode": {"type": "str"}}

PATH_OPTIONS = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "choices": ["file", "directory", "link", "absent"], "default": "file"},
    # A file may hold secrets: its checksum is kept out of the output and logs.
    "checksum": {"type": "str", "no_log": True},
    "checksum_algorithm": {"type": "str", "choices": ["sha1", "sha256"], "default": "sha1"},
    **ATTRIBUTE_OPTIONS,
    "src": {"type": "str"},
}

# Read by the action plugin (plugins/action/state_probe.py), which passes them on as
# paths entries: the module itself never receives any.
COPY_OPTIONS = {
    "src": {"type": "str", "required": True},
    "dest": {"type": "path", "required": True},
    **ATTRIBUTE_OPTIONS,
    "secret": {"type": "bool", "default": False},
    "notify": {"type": "list", "elements": "str"},
}
TEMPLATE_OPTIONS = {**COPY_OPTIONS, "validate": {"type": "str"}, "vars": {"type": "dict"}}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "str", "default": []},
            "paths": {"type": "list", "elements": "dict", "default": [], "options": PATH_OPTIONS},
            "templates": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": TEMPLATE_OPTIONS,
            },
            "copies": {"type": "list", "elements": "dict", "default": [], "options": COPY_OPTIONS},
            "units": {"type": "list", "elements": "str", "default": []},
            "enabled_units": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    if module.params["templates"] or module.params["copies"]:
        # Only reached when the module is run without its action plugin.
        module.fail_json(
            msg="templates and copies are read on the controller, by the action plugin"
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
