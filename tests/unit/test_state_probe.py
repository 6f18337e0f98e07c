"""state_probe: real files and the real dpkg-query of this machine.

systemd is not PID 1 on the build machine, so the unit tests feed `systemctl show`
output of the documented format to the parser (a stand-in, said here); the roles'
Molecule runs use the module against real systemd.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
from test_release_lib import COLLECTIONS

sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.llmops.registry.plugins.module_utils.state_probe import (
    ProbeError,
    missing_packages,
    path_in_place,
    probe,
    unit_states,
)

ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name


def run(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout, done.stderr


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - ansible's file checksum


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "app.conf"
    path.write_text("port = 1\n")
    path.chmod(0o640)
    return path


def entry(path: Path, **overrides) -> dict:
    wanted = {"checksum": sha1("port = 1\n"), "owner": ME, "group": MY_GROUP, "mode": "0640"}
    return {"path": str(path), **wanted, **overrides}


def test_a_file_as_wanted_is_in_place(conf):
    assert path_in_place(entry(conf))


@pytest.mark.parametrize(
    "overrides",
    [
        {"checksum": sha1("port = 2\n")},
        {"mode": "0644"},
        {"owner": "nobody"},
        {"group": "nogroup"},
        {"owner": "no-such-user-here"},
    ],
)
def test_a_file_that_differs_in_anything_is_not(conf, overrides):
    assert not path_in_place(entry(conf, **overrides))


def test_a_sha256_checksum_can_be_given(conf):
    wanted = hashlib.sha256(b"port = 1\n").hexdigest()
    assert path_in_place(entry(conf, checksum=wanted, checksum_algorithm="sha256"))
    assert not path_in_place(entry(conf, checksum=wanted))


def test_owner_and_group_may_be_numbers(conf):
    assert path_in_place(entry(conf, owner=str(os.getuid()), group=str(os.getgid())))
    assert not path_in_place(entry(conf, owner=str(os.getuid() + 1)))


def test_fields_left_out_are_not_compared(conf):
    assert path_in_place({"path": str(conf), "checksum": sha1("port = 1\n")})


def test_a_missing_file_a_directory_or_a_link_is_not_a_file(tmp_path, conf):
    link = tmp_path / "link.conf"
    link.symlink_to(conf)
    for path in (tmp_path / "missing.conf", tmp_path, link):
        assert not path_in_place(entry(path))


def test_directories_links_and_absent_paths(tmp_path, conf):
    folder = tmp_path / "d"
    folder.mkdir(mode=0o750)
    folder.chmod(0o750)
    assert path_in_place({"path": str(folder), "state": "directory", "mode": "0750"})
    assert not path_in_place({"path": str(folder), "state": "directory", "mode": "0755"})
    assert not path_in_place({"path": str(conf), "state": "directory"})
    link = tmp_path / "current"
    link.symlink_to("releases/1.0.0")
    assert path_in_place({"path": str(link), "state": "link", "src": "releases/1.0.0"})
    assert not path_in_place({"path": str(link), "state": "link", "src": "releases/2.0.0"})
    assert path_in_place({"path": str(tmp_path / "gone"), "state": "absent"})
    assert not path_in_place({"path": str(conf), "state": "absent"})


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"checksum": None}, "needs the checksum"),
        ({"mode": "u=rw"}, "not an octal number"),
        ({"state": "link", "src": None}, "needs src"),
        ({"state": "fifo"}, "not one of"),
        ({"checksum_algorithm": "md5"}, "checksum_algorithm must be"),
    ],
)
def test_an_entry_that_cannot_be_checked_fails_naming_the_path(conf, bad, words):
    with pytest.raises(ProbeError, match=words) as caught:
        path_in_place(entry(conf, **bad))
    assert str(conf) in str(caught.value)


def test_dpkg_reports_installed_and_missing_packages():
    # dpkg itself is installed on every Debian machine; the other name exists nowhere.
    assert missing_packages(["dpkg", "llmops-no-such-package"], run) == ["llmops-no-such-package"]
    assert missing_packages([], run) == []


def test_units_enabled_and_active_only():
    out = (
        "Id=redis-server.service\nUnitFileState=enabled\nActiveState=active\n\n"
        "Id=haproxy.service\nUnitFileState=disabled\nActiveState=active\n\n"
        "Id=nft.service\nUnitFileState=enabled\nActiveState=failed\n\n"
        "Id=ghost.service\nUnitFileState=\nActiveState=inactive\n"
    )
    units = ["redis-server", "haproxy", "nft", "ghost"]

    def systemctl(argv: list[str]) -> tuple[int, str, str]:
        assert argv[-len(units) :] == units  # one call for all of them
        return 0, out, ""

    result = probe([], [], ["redis-server", "haproxy"], systemctl, enabled_units=["nft", "ghost"])
    assert result["in_place"] == ["redis-server", "nft"]
    assert result["not_in_place"] == ["haproxy", "ghost"]
    # An answer with another number of blocks proves nothing.
    assert unit_states([*units, "more"], lambda argv: (0, out, "")) == {}
    with pytest.raises(ProbeError, match="systemctl show failed"):
        unit_states(units, lambda argv: (1, "", "Failed to connect to bus"))


def test_a_missing_package_proves_nothing_else(conf):
    result = probe(["llmops-no-such-package"], [entry(conf)], [], run)
    assert result == {
        "missing_packages": ["llmops-no-such-package"],
        "in_place": [],
        "not_in_place": [str(conf)],
    }
    assert probe(["dpkg"], [entry(conf)], [], run)["in_place"] == [str(conf)]


def test_a_bad_entry_fails_even_when_a_package_is_missing(conf):
    with pytest.raises(ProbeError, match="not an octal number"):
        probe(["llmops-no-such-package"], [entry(conf, mode="rw")], [], run)
