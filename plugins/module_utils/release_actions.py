# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""The two actions behind the release and rollback modules.

Each validates everything it can before it takes the lock or writes anything, so bad
input raises ReleaseError with the tree untouched. In check mode nothing is written
(not even the lock file) and the result says what would happen.
"""

from __future__ import annotations

import os
from typing import Any

from ansible_collections.llmops.registry.plugins.module_utils.releases import (
    ReleaseError,
    ReleaseTree,
    StepHook,
    _no_hook,
    inspect_artifact,
    install_release,
    normalise_checksum,
    now_iso,
    sha256_of,
    validate_version,
)


def _diff(before: str, after: str, path: str) -> dict[str, str]:
    return {
        "before": before,
        "after": after,
        "before_header": f"{path} (before)",
        "after_header": f"{path} (after)",
    }


def _expected_checksum(artifact: str, checksum: str | None) -> str:
    if checksum:
        return normalise_checksum(checksum)
    sidecar = artifact + ".sha256"
    if not os.path.isfile(sidecar):
        raise ReleaseError(
            f"no checksum given and no {sidecar} next to the artifact; pass checksum"
        )
    with open(sidecar, encoding="utf-8") as f:
        return normalise_checksum(f.read())


def _check_python(python: str) -> None:
    if not os.path.isabs(python) or not os.access(python, os.X_OK):
        raise ReleaseError(f"python {python!r} is not an executable absolute path")


def perform_release(
    *,
    path: str,
    version: str,
    artifact: str,
    checksum: str | None = None,
    keep_releases: int = 5,
    switch: bool = True,
    python: str = "/usr/bin/python3",
    protect: list[str] | None = None,
    lock_timeout: float = 0.0,
    check_mode: bool = False,
    hook: StepHook = _no_hook,
) -> dict[str, Any]:
    # Everything below up to the lock only reads.
    validate_version(version)
    if keep_releases < 1:
        raise ReleaseError(f"keep_releases must be at least 1, got {keep_releases}")
    protected = {validate_version(v) for v in (protect or [])}
    tree = ReleaseTree(path)
    if not os.path.isfile(artifact):
        raise ReleaseError(f"artifact {artifact} does not exist or is not a file")
    expected = _expected_checksum(artifact, checksum)
    actual = sha256_of(artifact)
    if actual != expected:
        raise ReleaseError(
            f"checksum mismatch for {artifact}: expected sha256 {expected}, got {actual}"
        )
    inspect_artifact(artifact, version)
    _check_python(python)
    before = tree.diff_view()

    with tree.lock(timeout=lock_timeout, create=not check_mode):
        active = tree.active()
        installed = False
        if tree.is_complete(version):
            recorded = str(tree.metadata(version).get("checksum", ""))
            if recorded != f"sha256:{expected}":
                raise ReleaseError(
                    f"release {version} is already installed from another artifact"
                    f" ({recorded}); releases are immutable, use a new version"
                )
        else:
            installed = True
        switched = switch and active != version
        revived = switch and tree.is_complete(version) and tree.is_rolled_back(version)

        if check_mode:
            new_active = version if switch else active
            new_previous = active if switched else tree.previous(active)
            keep_always = {v for v in (new_active, new_previous) if v} | protected | {version}
            if not switched:
                keep_always |= {v for v in (tree.rolled_back_from(),) if v}
            pruned = tree.plan_prune(keep_releases, keep_always, adding=version)
            releases = [v for v in tree.complete_versions() if v not in pruned]
            if installed:
                releases.append(version)
            after_lines = [
                f"current -> releases/{new_active}" if new_active else "current -> (none)",
                "releases:",
            ]
            after_lines += [f"  - {v}" for v in releases]
            after = "\n".join(after_lines) + "\n"
            return {
                "changed": installed or switched or bool(pruned),
                "version": version,
                "release_path": tree.release_dir(version),
                "installed": installed,
                "switched": switched,
                "active": new_active,
                "previous": new_previous,
                "releases": releases,
                "pruned": pruned,
                "diff": _diff(before, after, tree.path),
            }

        tree.remove_stale_temporaries()
        metadata = None
        if installed:
            metadata = install_release(
                tree=tree,
                version=version,
                artifact=artifact,
                checksum=expected,
                python=python,
                hook=hook,
            )
        if revived:
            tree.set_rolled_back(version, None)
        if switched:
            tree.switch(version)
            hook("switched")
        pruned = tree.prune(keep_releases, protected | {version})
        state = tree.state()
        return {
            "changed": installed or switched or revived or bool(pruned),
            "version": version,
            "release_path": tree.release_dir(version),
            "installed": installed,
            "switched": switched,
            "active": state["active"],
            "previous": state["previous"],
            "releases": state["releases"],
            "pruned": pruned,
            "metadata": metadata or tree.metadata(version),
            "diff": _diff(before, tree.diff_view(), tree.path),
        }


def perform_rollback(
    *,
    path: str,
    version: str | None = None,
    lock_timeout: float = 0.0,
    check_mode: bool = False,
) -> dict[str, Any]:
    tree = ReleaseTree(path)
    if version is not None:
        validate_version(version)
    active = tree.active()
    if active is None:
        raise ReleaseError(f"{tree.current_link} does not exist: there is no active release")
    previous = tree.previous(active)
    target = version or previous
    if target is None:
        raise ReleaseError(
            f"no previous release to roll back to (active: {active}); name a version instead"
        )
    if not tree.exists(target):
        installed = ", ".join(tree.complete_versions()) or "none"
        raise ReleaseError(
            f"release {target} is not installed under {tree.releases_dir} (installed: {installed})"
        )
    if not tree.is_complete(target):
        raise ReleaseError(
            f"release {target} is unfinished (an interrupted install); refusing to switch to it"
        )
    before = tree.diff_view()
    with tree.lock(timeout=lock_timeout, create=not check_mode):
        if tree.active() != active:
            raise ReleaseError("the active release changed while preparing; run again")
        changed = target != active
        if check_mode or not changed:
            after = before.replace(f"current -> releases/{active}", f"current -> releases/{target}")
            return {
                "changed": changed,
                "version": target,
                "rolled_back_from": active,
                "active": target,
                "previous": active if changed else previous,
                "releases": tree.complete_versions(),
                "diff": _diff(before, after, tree.path),
            }
        tree.switch(target, record=False)
        # The release left behind is the roll-forward candidate: recorded so no prune
        # deletes it until a release moves `current` again.
        if target == previous:
            # Back to where we were: the abandoned release leaves the history and
            # keeps no slot, so a second rollback goes further back, not forward.
            tree.truncate_history_to(target, rolled_back_from=active)
            tree.set_rolled_back(active, now_iso())
        else:
            tree.record_activation(target, rolled_back_from=active)
        if tree.is_rolled_back(target):
            tree.set_rolled_back(target, None)
        state = tree.state()
        return {
            "changed": True,
            "version": target,
            "rolled_back_from": active,
            "active": state["active"],
            "previous": state["previous"],
            "releases": state["releases"],
            "diff": _diff(before, tree.diff_view(), tree.path),
        }


def finish_module(module: Any, action: Any, failure: str, **kwargs: Any) -> None:
    """Runs a release action for a module and exits it: a ReleaseError's message as
    it is (with what was done before it, when the error carries a ``result``), other OS
    errors prefixed with what failed, the diff only in diff mode."""
    try:
        result = action(check_mode=module.check_mode, **kwargs)
    except ReleaseError as exc:
        partial = dict(getattr(exc, "result", None) or {})
        partial.pop("diff", None)
        module.fail_json(msg=str(exc), **partial)
    except OSError as exc:
        module.fail_json(msg=f"{failure} failed: {exc}")
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)
