"""module_utils/atomic_file: the one way release metadata and env files are replaced."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from test_release_lib import write_atomically


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith("."))


def test_replaces_the_text_with_the_mode_and_owner_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "instance-a.env"
    target.write_text("OLD=1\n")
    target.chmod(0o600)
    owner = (os.getuid(), os.getgid())
    write_atomically(str(target), "NEW=2\n", mode=0o640, owner=owner, sync_folder=True)
    assert target.read_text() == "NEW=2\n"
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o640
    assert (info.st_uid, info.st_gid) == owner
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    # The text fails to encode after the temporary file was created.
    target = tmp_path / "history.json"
    target.write_text("[]\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(str(target), "\udcff", mode=0o644, prefix=".instance-", suffix=".tmp")
    assert target.read_text() == "[]\n"
    assert leftovers(tmp_path) == []
