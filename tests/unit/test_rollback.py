"""The rollback module and its module_utils, on real temp trees."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from test_release_lib import (
    PYTHON,
    LockHeldError,
    ReleaseError,
    ReleaseTree,
    current_target,
    perform_release,
    perform_rollback,
    run_module,
    snapshot,
)


def test_rollback_goes_to_the_previous_release_from_history(tree: Path) -> None:
    result = perform_rollback(path=str(tree))
    assert result["changed"]
    assert result["version"] == "1.0.0" and result["rolled_back_from"] == "1.1.0"
    assert current_target(tree) == "releases/1.0.0"
    assert json.loads((tree / "history.json").read_text())["activations"] == ["1.0.0"]


def test_previous_comes_from_history_not_from_directory_mtimes(tree: Path) -> None:
    # Make the older release look newest on disk: rollback must not care.
    os.utime(tree / "releases/1.0.0", (4_000_000_000, 4_000_000_000))
    os.utime(tree / "releases/1.1.0", (1_000_000_000, 1_000_000_000))
    assert ReleaseTree(str(tree)).previous() == "1.0.0"
    perform_rollback(path=str(tree))
    assert current_target(tree) == "releases/1.0.0"


def test_second_rollback_goes_further_back_not_forward(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    perform_release(
        path=str(tree), version="1.2.0", artifact=str(artifacts["1.2.0"]), python=PYTHON
    )
    perform_rollback(path=str(tree))
    assert current_target(tree) == "releases/1.1.0"
    perform_rollback(path=str(tree))
    assert current_target(tree) == "releases/1.0.0"


def test_rolled_back_release_is_marked_and_takes_no_keep_slot(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    perform_release(
        path=str(tree), version="1.2.0", artifact=str(artifacts["1.2.0"]), python=PYTHON
    )
    perform_rollback(path=str(tree))
    meta = json.loads((tree / "releases/1.2.0/release.json").read_text())
    assert meta["rolled_back_at"]
    result = perform_release(
        path=str(tree),
        version="2.0.0",
        artifact=str(artifacts["2.0.0"]),
        python=PYTHON,
        keep_releases=3,
    )
    # 1.2.0 failed: it is pruned first and the three good releases stay.
    assert result["pruned"] == ["1.2.0"]
    assert result["releases"] == ["1.0.0", "1.1.0", "2.0.0"]


def test_deploy_after_a_rollback_keeps_the_rolled_back_from_release(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    # issue 18: the first deploy after a rollback pruned the release rolled back from.
    for version in ("1.2.0", "2.0.0"):
        perform_release(
            path=str(tree), version=version, artifact=str(artifacts[version]), python=PYTHON
        )
    perform_rollback(path=str(tree))
    assert current_target(tree) == "releases/1.2.0"
    deploy = {
        "path": str(tree),
        "version": "1.2.0",
        "artifact": str(artifacts["1.2.0"]),
        "python": PYTHON,
        "keep_releases": 1,
    }
    planned = perform_release(check_mode=True, **deploy)
    assert "2.0.0" not in planned["pruned"]
    result = perform_release(**deploy)
    assert "2.0.0" not in result["pruned"]
    assert (tree / "releases/2.0.0/release.json").is_file()
    # A no-op the second time: nothing left to prune, nothing switched.
    assert not perform_release(**deploy)["changed"]
    # The next release that moves current lets it go like any other rolled-back one.
    result = perform_release(**{**deploy, "version": "1.1.0", "artifact": str(artifacts["1.1.0"])})
    assert "2.0.0" in result["pruned"]
    assert "rolled_back_from" not in json.loads((tree / "history.json").read_text())


def test_named_rollback_switches_to_that_version_and_records_it(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    perform_release(
        path=str(tree), version="1.2.0", artifact=str(artifacts["1.2.0"]), python=PYTHON
    )
    result = perform_rollback(path=str(tree), version="1.0.0")
    assert result["version"] == "1.0.0" and current_target(tree) == "releases/1.0.0"
    history = json.loads((tree / "history.json").read_text())["activations"]
    assert history[-1] == "1.0.0"
    assert result["previous"] == "1.2.0"


def test_rollback_to_the_active_release_changes_nothing(tree: Path) -> None:
    before = snapshot(tree)
    result = perform_rollback(path=str(tree), version="1.1.0")
    assert not result["changed"]
    assert snapshot(tree) == before


def test_check_mode_reports_target_and_changes_nothing(tree: Path) -> None:
    before = snapshot(tree)
    result = perform_rollback(path=str(tree), check_mode=True)
    assert result["changed"] and result["version"] == "1.0.0"
    assert "current -> releases/1.0.0" in result["diff"]["after"]
    assert "current -> releases/1.1.0" in result["diff"]["before"]
    assert snapshot(tree) == before


def _only_one_release(tree: Path) -> None:
    perform_rollback(path=str(tree))  # now 1.0.0 with no history behind it


@pytest.mark.parametrize(
    ("case", "kwargs", "match"),
    [
        ("unknown version", {"version": "9.9.9"}, "is not installed"),
        ("invalid version", {"version": "latest"}, "invalid version"),
        ("unfinished release", {"version": "1.5.0"}, "unfinished"),
        ("no previous release", {}, "no previous release"),
    ],
)
def test_bad_rollback_fails_clearly_and_leaves_the_tree_byte_identical(
    case: str, kwargs: dict, match: str, tree: Path
) -> None:
    unfinished = tree / "releases/1.5.0"
    unfinished.mkdir()
    (unfinished / ".unfinished").write_text("interrupted\n")
    if case == "no previous release":
        _only_one_release(tree)
        # The only other release is the rolled-back one; make it unusable as a target.
        (tree / "releases/1.1.0/.unfinished").write_text("broken\n")
    before = snapshot(tree)
    with pytest.raises(ReleaseError, match=match):
        perform_rollback(path=str(tree), **kwargs)
    assert snapshot(tree) == before


def test_rollback_without_any_release_fails(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="no active release"):
        perform_rollback(path=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_rollback_while_the_lock_is_held_fails_and_changes_nothing(tree: Path) -> None:
    before = snapshot(tree)
    with open(tree / ".lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(LockHeldError):
            perform_rollback(path=str(tree))
    assert snapshot(tree) == before


def test_current_that_is_not_a_symlink_is_refused(tree: Path) -> None:
    (tree / "current").unlink()
    (tree / "current").mkdir()
    with pytest.raises(ReleaseError, match="not a symlink"):
        perform_rollback(path=str(tree))


def test_rollback_module_end_to_end(tree: Path) -> None:
    check = run_module("rollback", {"path": str(tree)}, check_mode=True)
    assert check["changed"] and current_target(tree) == "releases/1.1.0"
    done = run_module("rollback", {"path": str(tree)})
    assert done["changed"] and done["version"] == "1.0.0"
    assert current_target(tree) == "releases/1.0.0"
    failed = run_module("rollback", {"path": str(tree), "version": "7.0.0"})
    assert failed["failed"] and "7.0.0 is not installed" in failed["msg"]
