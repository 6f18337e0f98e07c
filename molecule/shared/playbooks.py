"""Runs the project's playbooks against a scenario's lab, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
PLAYBOOK_TIMEOUT = 420


class Playbooks:
    """ansible-playbook -i <Molecule's inventory> ... from the project folder."""

    def run(self, *args: str, json_report: bool = False) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(PROJECT / "collections"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            COLUMNS="1000",
        )
        if json_report:
            env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
        venv_bin = PROJECT / ".venv/bin/ansible-playbook"
        command = str(venv_bin) if venv_bin.exists() else "ansible-playbook"
        return subprocess.run(  # noqa: S603 - fixed argv: our own playbooks on our own lab
            [command, "-i", str(EPHEMERAL / "inventory"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=PROJECT,
            timeout=PLAYBOOK_TIMEOUT,
            check=False,
        )

    @staticmethod
    def report(proc: subprocess.CompletedProcess) -> dict:
        """The json callback's report of a run."""
        try:
            return json.loads(proc.stdout)
        except ValueError:
            tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            pytest.fail(f"no JSON report (rc {proc.returncode}):\n{tail}")

    @staticmethod
    def changed_tasks(report: dict) -> list[str]:
        """'host: play / task' for every task result that reported a change."""
        return [
            f"{host}: {play['play']['name']} / {task['task']['name']}"
            for play in report.get("plays", [])
            for task in play["tasks"]
            for host, result in task["hosts"].items()
            if result.get("changed")
        ]
