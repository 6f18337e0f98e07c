#!/usr/bin/python
# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rollback
short_description: Switch the schema registry back to the previous or a named release
version_added: "0.1.0"
description:
  - Points C(<path>/current) at the previous release or at O(version), atomically
    (temporary symlink renamed over C(current)).
  - The previous release comes from the recorded activation history
    (C(<path>/history.json)) and the real target of C(current), never from directory
    mtimes. Rolling back to the previous release removes the abandoned release from the
    history and marks it rolled back, so a second rollback goes further back and the
    failed release keeps no O(llmops.registry.release#module:keep_releases) slot.
  - Refuses a missing or unfinished release, and fails when there is no previous
    release, with the tree untouched.
  - Takes the same lock as M(llmops.registry.release).
author:
  - llmops maintainers (!UNKNOWN)
options:
  version:
    description: Release to switch to. When omitted, the previous release.
    type: str
extends_documentation_fragment:
  - llmops.registry.release_tree
  - llmops.registry.release_tree.switch
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the release it would switch to and changes nothing.
seealso:
  - module: llmops.registry.release
"""

EXAMPLES = r"""
- name: Roll back to the previous release
  llmops.registry.rollback:

- name: Roll back to a named release
  llmops.registry.rollback:
    version: 1.1.0
"""

RETURN = r"""
version:
  description: Release C(current) points to after the run.
  returned: always
  type: str
  sample: 1.1.0
rolled_back_from:
  description: Release that was active before the run.
  returned: always
  type: str
  sample: 1.2.0
active:
  description: Version C(current) points to after the run.
  returned: always
  type: str
  sample: 1.1.0
previous:
  description: Rollback target after the run, or null.
  returned: always
  type: str
  sample: 1.0.0
releases:
  description: Complete releases on the host, oldest install first.
  returned: always
  type: list
  elements: str
  sample: ["1.0.0", "1.1.0", "1.2.0"]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - docs come first in modules
from ansible_collections.llmops.registry.plugins.module_utils.release_actions import (  # noqa: E402
    finish_module,
    perform_rollback,
)
from ansible_collections.llmops.registry.plugins.module_utils.releases import (  # noqa: E402
    LOCK_ARGS,
    RELEASE_TREE_ARGS,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **RELEASE_TREE_ARGS,
            "version": {"type": "str"},
            **LOCK_ARGS,
        },
        supports_check_mode=True,
    )
    params = module.params
    finish_module(
        module,
        perform_rollback,
        "rollback",
        path=params["path"],
        version=params["version"],
        lock_timeout=params["lock_timeout"],
    )


if __name__ == "__main__":
    main()
