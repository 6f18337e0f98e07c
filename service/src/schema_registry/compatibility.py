"""Compatibility modes over a format's reader_rejections rule set.

BACKWARD: the new schema reads data written with the old (reader=new, writer=old).
FORWARD: the old schema reads data written with the new (reader=old, writer=new).
FULL: both. Plain modes compare with the latest previous version, *_TRANSITIVE ones
with every previous version. NONE checks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

_BACKWARD = {"BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}
_FORWARD = {"FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"}


def check(
    fmt: ModuleType, mode: str, new: Any, previous: Sequence[tuple[str, Any]]
) -> list[dict[str, str]]:
    """Violations of `mode` for `new` against `previous` [(version, parsed)], oldest first."""
    if mode == "NONE" or not previous:
        return []
    targets = previous if mode.endswith("_TRANSITIVE") else previous[-1:]
    violations: list[dict[str, str]] = []
    for version, old in targets:
        if mode in _BACKWARD:
            for item in fmt.reader_rejections(new, old):
                violations.append({**item, "direction": "backward", "against_version": version})
        if mode in _FORWARD:
            for item in fmt.reader_rejections(old, new):
                violations.append({**item, "direction": "forward", "against_version": version})
    return violations
