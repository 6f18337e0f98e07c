# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Documentation shared by the modules that work on a host's release tree.

llmops.registry.release, llmops.registry.rollback and llmops.registry.release_lock:
their argument specs take the same options from
plugins/module_utils/releases.py (RELEASE_TREE_ARGS, LOCK_ARGS). Where fragments give
one attribute twice the first listed wins: list these before
ansible.builtin.action_common_attributes (its platform says N/A).
"""

from __future__ import annotations


class ModuleDocFragment:
    # The tree itself (all three modules): where it is, and that it is plain POSIX files.
    DOCUMENTATION = r"""
options:
  path:
    description: >-
      Root of the release tree on the host (C(releases/), C(current), C(history.json),
      the locks).
    type: path
    default: /opt/schema-registry
attributes:
  platform:
    support: full
    platforms: posix
"""

    # The modules that switch `current` (release, rollback): the per-host lock of one run,
    # and what diff mode shows.
    SWITCH = r"""
options:
  lock_timeout:
    description: >-
      Seconds to wait for another release or rollback run's lock (C(<path>/.lock))
      before failing.
    type: float
    default: 0
attributes:
  diff_mode:
    support: full
    details: Shows the target of C(current) and the release list before and after.
"""
