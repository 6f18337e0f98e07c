"""The release module and its module_utils, on real temp trees with real venvs."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_release_lib import (
    PYTHON,
    LockHeldError,
    ReleaseError,
    ReleaseTree,
    build_artifact,
    checksum_of,
    current_target,
    perform_release,
    run_module,
    snapshot,
    validate_version,
)


def test_first_release_installs_venv_writes_metadata_and_points_current(
    tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    root = tmp_path / "opt"
    result = perform_release(
        path=str(root), version="1.0.0", artifact=str(artifacts["1.0.0"]), python=PYTHON
    )
    release = root / "releases/1.0.0"
    assert result["changed"] and result["installed"] and result["switched"]
    assert current_target(root) == "releases/1.0.0"
    assert not (release / ".unfinished").exists()
    meta = json.loads((release / "release.json").read_text())
    assert meta["version"] == "1.0.0"
    assert meta["checksum"] == "sha256:" + checksum_of(artifacts["1.0.0"])
    assert meta["previous"] is None
    assert meta["installed_at"].endswith("Z") and meta["installed_by"]
    # The service really is installed in the release's own venv.
    out = subprocess.run(
        [str(release / "venv/bin/schema-registry")], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "1.0.0"
    assert json.loads((root / "history.json").read_text())["activations"] == ["1.0.0"]


def test_second_release_records_previous_and_history(tree: Path) -> None:
    meta = json.loads((tree / "releases/1.1.0/release.json").read_text())
    assert meta["previous"] == "1.0.0"
    state = ReleaseTree(str(tree)).state()
    assert state["active"] == "1.1.0" and state["previous"] == "1.0.0"


def test_rerun_of_installed_active_release_changes_nothing(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    before = snapshot(tree)
    result = perform_release(
        path=str(tree), version="1.1.0", artifact=str(artifacts["1.1.0"]), python=PYTHON
    )
    assert not result["changed"]
    assert snapshot(tree) == before


def test_checksum_file_next_to_artifact_is_used_when_no_checksum_given(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    result = perform_release(
        path=str(tree),
        version="1.2.0",
        artifact=str(artifacts["1.2.0"]),
        python=PYTHON,
        checksum=None,
    )
    assert result["installed"] and current_target(tree) == "releases/1.2.0"


def test_switch_false_installs_without_moving_current(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    result = perform_release(
        path=str(tree),
        version="1.2.0",
        artifact=str(artifacts["1.2.0"]),
        python=PYTHON,
        switch=False,
    )
    assert result["installed"] and not result["switched"]
    assert current_target(tree) == "releases/1.1.0"
    assert ReleaseTree(str(tree)).is_complete("1.2.0")


def test_check_mode_reports_the_plan_and_writes_nothing(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    before = snapshot(tree)
    result = perform_release(
        path=str(tree),
        version="1.2.0",
        artifact=str(artifacts["1.2.0"]),
        python=PYTHON,
        check_mode=True,
        keep_releases=2,
    )
    assert result["changed"] and result["installed"] and result["switched"]
    assert result["active"] == "1.2.0" and result["previous"] == "1.1.0"
    assert result["pruned"] == ["1.0.0"]
    assert "current -> releases/1.1.0" in result["diff"]["before"]
    assert "current -> releases/1.2.0" in result["diff"]["after"]
    assert snapshot(tree) == before


def test_check_mode_on_an_empty_host_creates_not_even_the_lock(
    tmp_path: Path, artifacts: dict[str, Path]
) -> None:
    root = tmp_path / "opt"
    result = perform_release(
        path=str(root),
        version="1.0.0",
        artifact=str(artifacts["1.0.0"]),
        python=PYTHON,
        check_mode=True,
    )
    assert result["changed"]
    assert not root.exists()


def test_prune_keeps_active_and_previous_and_removes_the_oldest(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    perform_release(
        path=str(tree),
        version="1.2.0",
        artifact=str(artifacts["1.2.0"]),
        python=PYTHON,
        keep_releases=5,
    )
    result = perform_release(
        path=str(tree),
        version="2.0.0",
        artifact=str(artifacts["2.0.0"]),
        python=PYTHON,
        keep_releases=1,
    )
    # keep 1, but the previous release (1.2.0) is never pruned.
    assert result["pruned"] == ["1.0.0", "1.1.0"]
    assert sorted(os.listdir(tree / "releases")) == ["1.2.0", "2.0.0"]
    assert result["active"] == "2.0.0" and result["previous"] == "1.2.0"


def test_unfinished_release_takes_no_slot_and_is_removed(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    leftover = tree / "releases/1.9.0"
    leftover.mkdir()
    (leftover / ".unfinished").write_text("interrupted\n")
    result = perform_release(
        path=str(tree),
        version="1.2.0",
        artifact=str(artifacts["1.2.0"]),
        python=PYTHON,
        keep_releases=3,
    )
    assert "1.9.0" in result["pruned"]
    assert result["releases"] == ["1.0.0", "1.1.0", "1.2.0"]


def test_protected_release_survives_pruning(tree: Path, artifacts: dict[str, Path]) -> None:
    perform_release(
        path=str(tree), version="1.2.0", artifact=str(artifacts["1.2.0"]), python=PYTHON
    )
    result = perform_release(
        path=str(tree),
        version="2.0.0",
        artifact=str(artifacts["2.0.0"]),
        python=PYTHON,
        keep_releases=1,
        protect=["1.0.0"],
    )
    assert result["pruned"] == ["1.1.0"]
    assert (tree / "releases/1.0.0").is_dir()


@pytest.mark.parametrize("bad", ["1.0", "v1.0.0", "1.0.0/../x", "../1.0.0", "", "01.0.0"])
def test_invalid_version_strings_are_refused(bad: str) -> None:
    with pytest.raises(ReleaseError, match="invalid version"):
        validate_version(bad)


def _extra_file(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0
    return info


def _bad_inputs(artifacts: dict[str, Path], tmp_path: Path) -> dict[str, dict]:
    """Each bad input with the message it must fail with; artifacts built in tmp_path."""
    folders = {name: tmp_path / name for name in ("top", "escape", "link", "rebuilt")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    wrong_top = build_artifact(folders["top"], "3.0.0", top="schema-registry-9.9.9")
    escaping = build_artifact(
        folders["escape"], "3.1.0", extra_member=_extra_file("schema-registry-3.1.0/../../escape")
    )
    link = tarfile.TarInfo("schema-registry-3.2.0/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    linking = build_artifact(folders["link"], "3.2.0", extra_member=link)
    # A rebuilt 1.1.0 with other bytes must never replace the installed 1.1.0.
    rebuilt = build_artifact(
        folders["rebuilt"], "1.1.0", extra_member=_extra_file("schema-registry-1.1.0/NOTES")
    )
    good = str(artifacts["1.2.0"])
    return {
        "checksum mismatch": {
            "version": "1.2.0",
            "artifact": good,
            "checksum": "0" * 64,
            "match": "checksum mismatch",
        },
        "missing artifact": {
            "version": "1.2.0",
            "artifact": str(tmp_path / "nope.tar.gz"),
            "match": "does not exist",
        },
        "invalid version": {"version": "1.2", "artifact": good, "match": "invalid version"},
        "artifact of another version": {
            "version": "3.0.0",
            "artifact": str(wrong_top),
            "match": "outside the folder",
        },
        "path escaping the release": {
            "version": "3.1.0",
            "artifact": str(escaping),
            "match": "unsafe path",
        },
        "symlink member": {
            "version": "3.2.0",
            "artifact": str(linking),
            "match": "not a plain file",
        },
        "installed version from another artifact": {
            "version": "1.1.0",
            "artifact": str(rebuilt),
            "match": "immutable",
        },
        "malformed checksum": {
            "version": "1.2.0",
            "artifact": good,
            "checksum": "abc",
            "match": "invalid checksum",
        },
        "keep_releases zero": {
            "version": "1.2.0",
            "artifact": good,
            "keep_releases": 0,
            "match": "keep_releases",
        },
        "missing python": {
            "version": "1.2.0",
            "artifact": good,
            "python": "/nonexistent/python3",
            "match": "not an executable",
        },
    }


BAD_CASES = [
    "checksum mismatch",
    "missing artifact",
    "invalid version",
    "artifact of another version",
    "path escaping the release",
    "symlink member",
    "installed version from another artifact",
    "malformed checksum",
    "keep_releases zero",
    "missing python",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_fails_clearly_and_leaves_the_tree_byte_identical(
    case: str, tree: Path, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    spec = _bad_inputs(artifacts, tmp_path / "bad")[case]
    match = spec.pop("match")
    before = snapshot(tree)
    with pytest.raises(ReleaseError, match=match):
        perform_release(path=str(tree), python=spec.pop("python", PYTHON), **spec)
    assert snapshot(tree) == before
    assert current_target(tree) == "releases/1.1.0"


def test_tampered_file_inside_artifact_never_becomes_current(tree: Path, tmp_path: Path) -> None:
    tampered = build_artifact(tmp_path, "1.3.0", tamper=True)
    with pytest.raises(ReleaseError, match="does not match SHA256SUMS"):
        perform_release(path=str(tree), version="1.3.0", artifact=str(tampered), python=PYTHON)
    assert current_target(tree) == "releases/1.1.0"
    state = ReleaseTree(str(tree)).state()
    # The rejected release leaves nothing behind (issue 18): no .unfinished folder, no
    # dot folder of the discard.
    assert state["unfinished"] == [] and "1.3.0" not in state["releases"]
    assert sorted(p.name for p in (tree / "releases").iterdir()) == ["1.0.0", "1.1.0"]


def test_held_lock_fails_and_changes_nothing(tree: Path, artifacts: dict[str, Path]) -> None:
    before = snapshot(tree)
    with open(tree / ".lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(LockHeldError, match="holds the lock"):
            perform_release(
                path=str(tree),
                version="1.2.0",
                artifact=str(artifacts["1.2.0"]),
                python=PYTHON,
                lock_timeout=0.5,
            )
    assert snapshot(tree) == before


def test_module_returns_diff_and_fails_with_a_message(
    tree: Path, artifacts: dict[str, Path]
) -> None:
    ok = run_module(
        "release",
        {"path": str(tree), "version": "1.2.0", "artifact": str(artifacts["1.2.0"])},
        check_mode=True,
    )
    assert ok["changed"] and "diff" in ok and not ok.get("failed")
    bad = run_module(
        "release",
        {
            "path": str(tree),
            "version": "1.2.0",
            "artifact": str(artifacts["1.2.0"]),
            "checksum": "f" * 64,
        },
    )
    assert bad["failed"] and "checksum mismatch" in bad["msg"]
