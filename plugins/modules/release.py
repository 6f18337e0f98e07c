#!/usr/bin/python
# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release
short_description: Install a schema registry release into its own folder and switch to it
version_added: "0.1.0"
description:
  - Verifies the sha256 of a service artifact (C(schema-registry-X.Y.Z.tar.gz) as written
    by C(service/build_artifact.py)), extracts it into C(<path>/releases/<version>/),
    checks every file against the artifact's C(SHA256SUMS), creates C(venv/) with the
    target's Python and installs the service from the artifact's own wheels
    (C(pip install --no-index), pip run from the Python's own pip wheel; the venv holds
    the service and its dependencies, no pip or setuptools).
  - The release folder carries an C(.unfinished) marker until it is complete and its
    C(release.json) (version, checksum, installed_at, installed_by, previous) is written,
    so an interrupted install never counts as a release; the next run removes and
    redoes it.
  - Switches C(<path>/current) atomically (temporary symlink renamed over it) and
    records the activation in C(<path>/history.json). The active release is always the
    real target of C(current), never a directory mtime.
  - Prunes to O(keep_releases) complete releases. The active and previous releases, the
    one being installed and those in O(protect) are never removed; unfinished and
    rolled-back releases never take a slot.
  - An exclusive lock (flock on C(<path>/.lock)) stops two release or rollback runs on
    one host at once.
  - Bad input (invalid version, missing artifact, checksum mismatch, held lock) fails
    before anything is written.
author:
  - llmops maintainers (!UNKNOWN)
options:
  version:
    description: Semantic version of the release, for example V(1.2.3). Must match the artifact.
    type: str
    required: true
  artifact:
    description: Path of the artifact tarball on the managed host.
    type: path
    required: true
  checksum:
    description:
      - Expected sha256 of the artifact, as 64 hex digits, optionally prefixed C(sha256:).
      - When omitted, read from C(<artifact>.sha256) next to the artifact.
    type: str
  keep_releases:
    description: How many complete releases to keep (the active and previous always stay).
    type: int
    default: 5
  switch:
    description: Point C(current) at this release once it is complete.
    type: bool
    default: true
  python:
    description: Python interpreter on the managed host that creates the release's venv.
    type: path
    default: /usr/bin/python3
  protect:
    description: Versions never pruned, for example those instances still run.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - llmops.registry.release_tree
  - llmops.registry.release_tree.switch
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Verifies the artifact and reports what would be installed, switched and pruned.
requirements:
  - Python 3 with the C(venv) module on the managed host (Debian package C(python3-venv)).
seealso:
  - module: llmops.registry.rollback
  - module: community.general.deploy_helper
notes:
  - Releases are immutable. Installing a version that exists with another checksum fails.
"""

EXAMPLES = r"""
- name: Install release 1.2.0 and make it current
  llmops.registry.release:
    version: 1.2.0
    artifact: /var/cache/schema-registry/schema-registry-1.2.0.tar.gz
    checksum: "{{ lookup('ansible.builtin.file', sha256_file).split()[0] }}"
  vars:
    sha256_file: dist/schema-registry-1.2.0.tar.gz.sha256
    keep_releases: 3

- name: Prepare release 1.3.0 without switching (a later task switches instances one by one)
  llmops.registry.release:
    version: 1.3.0
    artifact: /var/cache/schema-registry/schema-registry-1.3.0.tar.gz
    switch: false
    protect:
      - 1.2.0
"""

RETURN = r"""
version:
  description: The release this run installed or found.
  returned: always
  type: str
  sample: 1.2.0
release_path:
  description: Folder of the release.
  returned: always
  type: str
  sample: /opt/schema-registry/releases/1.2.0
installed:
  description: Whether the release was installed by this run (or would be, in check mode).
  returned: always
  type: bool
switched:
  description: Whether C(current) was switched to this release.
  returned: always
  type: bool
active:
  description: Version C(current) points to after the run.
  returned: always
  type: str
  sample: 1.2.0
previous:
  description: Release active before the active one (the rollback target), or null.
  returned: always
  type: str
  sample: 1.1.0
releases:
  description: Complete releases kept, oldest install first.
  returned: always
  type: list
  elements: str
  sample: ["1.1.0", "1.2.0"]
pruned:
  description: Releases removed (or that would be) by pruning, unfinished ones included.
  returned: always
  type: list
  elements: str
  sample: ["1.0.0"]
metadata:
  description: Content of the release's C(release.json).
  returned: success, not in check mode
  type: dict
  sample:
    version: 1.2.0
    checksum: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    installed_at: "2026-11-23T17:00:00.000000Z"
    installed_by: deploy
    previous: 1.1.0
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402 - docs come first in modules
from ansible_collections.llmops.registry.plugins.module_utils.release_actions import (  # noqa: E402
    finish_module,
    perform_release,
)
from ansible_collections.llmops.registry.plugins.module_utils.releases import (  # noqa: E402
    LOCK_ARGS,
    RELEASE_TREE_ARGS,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **RELEASE_TREE_ARGS,
            "version": {"type": "str", "required": True},
            "artifact": {"type": "path", "required": True},
            "checksum": {"type": "str"},
            "keep_releases": {"type": "int", "default": 5},
            "switch": {"type": "bool", "default": True},
            "python": {"type": "path", "default": "/usr/bin/python3"},
            "protect": {"type": "list", "elements": "str", "default": []},
            **LOCK_ARGS,
        },
        supports_check_mode=True,
    )
    params = module.params
    finish_module(
        module,
        perform_release,
        f"release {params['version']}",
        path=params["path"],
        version=params["version"],
        artifact=params["artifact"],
        checksum=params["checksum"],
        keep_releases=params["keep_releases"],
        switch=params["switch"],
        python=params["python"],
        protect=params["protect"],
        lock_timeout=params["lock_timeout"],
    )


if __name__ == "__main__":
    main()
