"""state_probe's templates entries: rendered on the controller by the action plugin.

Real ansible-playbook runs on this machine (connection local): a role keeps one list of
its templates, passes it to the probe and loops its one template task over it. The
checksum the probe compares must be the one of the file the template task writes, so
right after the write the probe reports it in place and a re-run skips the task; a
changed template or variable makes it not in place again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_release_lib import COLLECTIONS

REPO = Path(__file__).resolve().parents[2]

TASKS = """
- name: Probe before
  llmops.registry.state_probe:
    templates: "{{ demo_files }}"
  register: before

- name: Write the files
  ansible.builtin.template:
    src: "{{ item.src }}"
    dest: "{{ item.dest }}"
    mode: "{{ item.mode }}"
  vars:
    demo_instance: "{{ item.vars.demo_instance | default(none) }}"
  loop: "{{ demo_files }}"
  loop_control:
    label: "{{ item.dest }}"
  when: item.dest not in before.in_place

- name: Probe after
  llmops.registry.state_probe:
    templates: "{{ demo_files }}"
  register: after
"""

PLAY = """
- name: One list drives the probe and the template task
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - demo
"""

# Uses what the template action sets (ansible_managed, template_destpath), a block
# (trim_blocks) and an include from the role's templates/ (the search path).
APP = """# {{ ansible_managed }}
port = {{ demo_port }}
{% if demo_port > 1 %}
high
{% endif %}
{% include 'part.j2' %}
dest = {{ template_destpath }}
"""


def both(out: Path) -> list[str]:
    return [str(out / "app.conf"), str(out / "part.conf")]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    role = tmp_path / "roles" / "demo"
    (role / "tasks").mkdir(parents=True)
    (role / "templates").mkdir()
    (role / "vars").mkdir()
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text("demo_port: 1\n")
    (role / "tasks" / "main.yml").write_text(TASKS)
    (role / "templates" / "app.conf.j2").write_text(APP)
    (role / "templates" / "part.j2").write_text("part {{ demo_port * 10 }}\n")
    out = tmp_path / "out"
    out.mkdir()
    files = [
        {"src": "app.conf.j2", "dest": str(out / "app.conf"), "mode": "0640"},
        {"src": "part.j2", "dest": str(out / "part.conf"), "mode": "0644"},
    ]
    (role / "vars" / "main.yml").write_text(json.dumps({"demo_files": files}))
    (tmp_path / "play.yml").write_text(PLAY)
    return tmp_path


def run(project: Path, *args: str) -> dict:
    """The play's results by task name (json callback); fails on a failed run."""
    done = _run(project, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return _results(done.stdout)


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("ansible-playbook") or str(REPO / ".venv/bin/ansible-playbook")
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_ROLES_PATH=str(project / "roles"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
    )
    argv = [binary, "-i", "localhost,", *args, str(project / "play.yml")]
    return subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, check=False)


def _results(stdout: str) -> dict:
    report = json.loads(stdout[stdout.index("{") :])
    return {
        task["task"]["name"].removeprefix("demo : "): task["hosts"]["localhost"]
        for play in report["plays"]
        for task in play["tasks"]
    }


def test_the_rendered_checksum_is_the_one_of_the_file_the_template_task_writes(project):
    out = project / "out"
    first = run(project)
    assert sorted(first["Probe before"]["not_in_place"]) == [
        str(out / "app.conf"),
        str(out / "part.conf"),
    ]
    written = first["Write the files"]["results"]
    assert [r["changed"] for r in written] == [True, True]
    for result in written:
        path = Path(result["dest"])
        assert hashlib.sha1(path.read_bytes()).hexdigest() == result["checksum"]  # noqa: S324
    text = (out / "app.conf").read_text()
    assert text.startswith("# Ansible managed\nport = 1\npart 10") and "high" not in text
    assert sorted(first["Probe after"]["in_place"]) == [
        str(out / "app.conf"),
        str(out / "part.conf"),
    ]

    again = run(project)
    assert sorted(again["Probe before"]["in_place"]) == [
        str(out / "app.conf"),
        str(out / "part.conf"),
    ]
    assert all(r.get("skipped") for r in again["Write the files"]["results"])


def test_a_changed_template_or_variable_is_not_in_place(project):
    out = project / "out"
    run(project)
    template = project / "roles" / "demo" / "templates" / "app.conf.j2"
    template.write_text(template.read_text() + "extra line\n")
    changed = run(project)
    assert changed["Probe before"]["not_in_place"] == [str(out / "app.conf")]
    assert changed["Probe before"]["in_place"] == [str(out / "part.conf")]
    assert [r.get("changed", False) for r in changed["Write the files"]["results"]] == [True, False]
    assert (out / "app.conf").read_text().endswith("extra line\n")

    # The included part and the variable both change: both files differ now.
    other = run(project, "-e", '{"demo_port": 2}')
    assert sorted(other["Probe before"]["not_in_place"]) == [
        str(out / "app.conf"),
        str(out / "part.conf"),
    ]
    assert "high\npart 20" in (out / "app.conf").read_text()
    assert sorted(other["Probe after"]["in_place"]) == [
        str(out / "app.conf"),
        str(out / "part.conf"),
    ]


def test_attributes_are_compared_too(project):
    out = project / "out"
    run(project)
    (out / "part.conf").chmod(0o600)
    result = run(project)
    assert result["Probe before"]["not_in_place"] == [str(out / "part.conf")]
    assert (out / "part.conf").stat().st_mode & 0o777 == 0o644


def test_the_checksums_are_not_shown(project):
    done = _run(project, "-vvv")
    assert done.returncode == 0
    digest = hashlib.sha1((project / "out" / "part.conf").read_bytes()).hexdigest()  # noqa: S324
    # The template task reports its own checksum; the probe's results and arguments never do.
    probes = {k: v for k, v in _results(done.stdout).items() if k.startswith("Probe")}
    assert digest not in json.dumps(probes)


def test_an_entrys_vars_render_one_template_once_per_instance(project):
    out = project / "out"
    (project / "roles" / "demo" / "templates" / "instance.env.j2").write_text(
        "NAME={{ demo_instance.name }}\nPORT={{ demo_instance.port + demo_port }}\n"
    )
    files = [
        {
            "src": "instance.env.j2",
            "dest": str(out / f"instance-{name}.env"),
            "mode": "0640",
            "vars": {"demo_instance": {"name": name, "port": port}},
        }
        for name, port in (("a", 8080), ("b", 8081))
    ]
    both = [str(out / "instance-a.env"), str(out / "instance-b.env")]
    extra = ("-e", json.dumps({"demo_files": files}))
    first = run(project, *extra)
    assert sorted(first["Probe before"]["not_in_place"]) == both
    assert (out / "instance-b.env").read_text() == "NAME=b\nPORT=8082\n"
    assert sorted(first["Probe after"]["in_place"]) == both
    assert sorted(run(project, *extra)["Probe before"]["in_place"]) == both

    # Another instance's value changes that instance's file only.
    files[1]["vars"]["demo_instance"]["port"] = 9000
    moved = run(project, "-e", json.dumps({"demo_files": files}))
    assert moved["Probe before"]["not_in_place"] == [str(out / "instance-b.env")]
    assert (out / "instance-b.env").read_text() == "NAME=b\nPORT=9001\n"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"src": "app.conf.j2", "dest": "/nonexistent/x", "colour": "red"}, "unknown keys colour"),
        ({"dest": "/nonexistent/x"}, "needs src"),
        ({"src": "app.conf.j2", "dest": "relative/x"}, "dest must be the file's absolute path"),
        ({"src": "missing.j2", "dest": "/nonexistent/x"}, "missing.j2"),
        ({"src": "app.conf.j2", "dest": "/nonexistent/x", "vars": [1]}, "vars must be a dict"),
    ],
    ids=["unknown-key", "no-src", "relative-dest", "no-template", "vars-not-a-dict"],
)
def test_a_bad_entry_fails_the_probe_naming_it_and_writes_nothing(project, entry, words):
    assert_refused(project, {"demo_files": [entry]}, words, "Write the files")


def assert_refused(project: Path, extra_vars: dict, words: str, write_task: str) -> None:
    """The probe fails with a message holding words; the writing task never runs."""
    done = _run(project, "-e", json.dumps(extra_vars))
    assert done.returncode != 0
    results = _results(done.stdout)
    assert results["Probe before"].get("failed")
    assert words in results["Probe before"]["msg"]
    assert write_task not in results
    assert list((project / "out").iterdir()) == []
