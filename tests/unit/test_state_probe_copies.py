"""state_probe's copies entries: controller files read by the action plugin.

Real ansible-playbook runs on this machine (connection local), as in
test_state_probe_templates: a role keeps one list of the files it copies from the
controller, passes it to the probe and loops its one copy task over it. The checksum
the probe compares must be the one of the file the copy task writes (a file of the
role's files/ folder, an absolute path, a vault-encrypted file), so a re-run skips the
task, and a changed source or attribute makes the file not in place again.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from test_state_probe_templates import PLAY, REPO, _results, _run, assert_refused, run

TASKS = """
- name: Probe before
  llmops.registry.state_probe:
    copies: "{{ demo_copies }}"
  register: before

- name: Copy the files
  ansible.builtin.copy:
    src: "{{ item.src }}"
    dest: "{{ item.dest }}"
    mode: "{{ item.mode }}"
  loop: "{{ demo_copies }}"
  loop_control:
    label: "{{ item.dest }}"
  no_log: "{{ item.secret | default(false) }}"
  when: item.dest not in before.in_place

- name: Probe after
  llmops.registry.state_probe:
    copies: "{{ demo_copies }}"
  register: after
"""

VAULT_PASSWORD = "unit-test-only"  # noqa: S105 - a throwaway vault for this test


@pytest.fixture
def project(tmp_path: Path) -> Path:
    role = tmp_path / "roles" / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "files").mkdir()
    (role / "vars").mkdir()
    (role / "tasks" / "main.yml").write_text(TASKS)
    (role / "files" / "check.sh").write_text("#!/bin/sh\nexit 0\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "engine.py").write_text("VALUE = 1\n")
    out = tmp_path / "out"
    out.mkdir()
    copies = [
        {"src": "check.sh", "dest": str(out / "check"), "mode": "0755"},
        {"src": str(elsewhere / "engine.py"), "dest": str(out / "engine.py"), "mode": "0644"},
    ]
    (role / "vars" / "main.yml").write_text(json.dumps({"demo_copies": copies}))
    (tmp_path / "play.yml").write_text(PLAY)
    return tmp_path


def test_the_controller_files_checksum_is_the_one_of_the_file_the_copy_task_writes(project):
    out = project / "out"
    both = [str(out / "check"), str(out / "engine.py")]
    first = run(project)
    assert sorted(first["Probe before"]["not_in_place"]) == both
    written = first["Copy the files"]["results"]
    assert [r["changed"] for r in written] == [True, True]
    assert (out / "engine.py").read_text() == "VALUE = 1\n"
    assert (out / "check").stat().st_mode & 0o777 == 0o755
    assert sorted(first["Probe after"]["in_place"]) == both

    again = run(project)
    assert sorted(again["Probe before"]["in_place"]) == both
    assert all(r.get("skipped") for r in again["Copy the files"]["results"])


def test_a_changed_source_or_attribute_is_not_in_place(project):
    out = project / "out"
    run(project)
    (project / "elsewhere" / "engine.py").write_text("VALUE = 2\n")
    (out / "check").chmod(0o700)
    changed = run(project)
    assert sorted(changed["Probe before"]["not_in_place"]) == [
        str(out / "check"),
        str(out / "engine.py"),
    ]
    assert (out / "engine.py").read_text() == "VALUE = 2\n"
    assert (out / "check").stat().st_mode & 0o777 == 0o755
    assert sorted(changed["Probe after"]["in_place"]) == [
        str(out / "check"),
        str(out / "engine.py"),
    ]


def test_a_vault_encrypted_source_is_compared_decrypted(project):
    secret = project / "roles" / "demo" / "files" / "secret.key"
    secret.write_text("key material\n")
    password = project / "vault.pass"
    password.write_text(VAULT_PASSWORD + "\n")
    vault = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "ansible-vault"
    subprocess.run(
        [str(vault), "encrypt", "--vault-password-file", str(password), str(secret)],
        check=True,
        capture_output=True,
    )
    assert secret.read_text().startswith("$ANSIBLE_VAULT")
    dest = str(project / "out" / "secret.key")
    entry = {"src": "secret.key", "dest": dest, "mode": "0600", "secret": True}
    args = ("--vault-password-file", str(password), "-e", json.dumps({"demo_copies": [entry]}))
    first = run(project, *args)
    assert first["Probe before"]["not_in_place"] == [dest]
    assert Path(dest).read_text() == "key material\n"
    assert first["Probe after"]["in_place"] == [dest]
    assert run(project, *args)["Probe before"]["in_place"] == [dest]


def test_the_checksums_are_not_shown(project):
    done = _run(project, "-vvv")
    assert done.returncode == 0
    digest = hashlib.sha1((project / "out" / "check").read_bytes()).hexdigest()  # noqa: S324
    probes = {k: v for k, v in _results(done.stdout).items() if k.startswith("Probe")}
    assert digest not in json.dumps(probes)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"src": "check.sh", "dest": "/nonexistent/x", "validate": "1"}, "unknown keys validate"),
        ({"src": "check.sh"}, "needs dest"),
        ({"src": "check.sh", "dest": "/nonexistent/"}, "dest must be the file's absolute path"),
        ({"src": "missing.sh", "dest": "/nonexistent/x"}, "missing.sh"),
        ({"src": "/", "dest": "/nonexistent/x"}, "src is a folder"),
    ],
    ids=["unknown-key", "no-dest", "folder-dest", "no-file", "folder-src"],
)
def test_a_bad_entry_fails_the_probe_naming_it_and_writes_nothing(project, entry, words):
    assert_refused(project, {"demo_copies": [entry]}, words, "Copy the files")
