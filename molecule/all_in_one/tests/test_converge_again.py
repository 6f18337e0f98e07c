"""A converge that finds nothing to do changes nothing and runs none of the tasks the
roles' state probes can skip.

This is the scenario's idempotence check (the scenarios that link it leave Molecule's
idempotence step out: it would be the same second run). Its name sorts it before every
verify test that runs the deploy again, so it is the run right after converge.

Each role asks llmops.registry.state_probe once which of its packages, files and units
are already as wanted and skips their tasks. After a converge every probe must prove
everything in place: a probe entry that no longer describes its task would make that
task run on every re-run (costing time, not correctness, so only this test sees it).
Shared by the scenarios that link this file; each re-runs its own converge playbook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

# molecule/shared, found from this file's real place (other scenarios link it).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from playbooks import PROJECT, Playbooks


def _probed_tasks() -> set[str]:
    """'llmops.registry.<role> : <task name>' of the tasks a state probe result can skip."""
    names = set()
    for path in (PROJECT / "roles").glob("*/tasks/*.yml"):
        role = path.parent.parent.name
        for task in yaml.safe_load(path.read_text()) or []:
            when = task.get("when", "")
            conditions = when if isinstance(when, list) else [when]
            if any("_probe." in str(condition) for condition in conditions):
                names.add(f"llmops.registry.{role} : {task['name']}")
    return names


def _converge_playbook() -> str:
    # The scenario this test runs in (the link's folder, not the linked file's).
    here = Path(__file__).absolute().parents[1]
    scenario = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY") or here)
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    # Molecule reads the playbooks from `ansible:` or, older style, `provisioner:`.
    section = config.get("ansible") or config.get("provisioner") or {}
    converge = section.get("playbooks", {}).get("converge", "converge.yml")
    return str((scenario / converge).resolve())


def test_a_converge_with_nothing_to_do_skips_every_probed_task():
    playbooks = Playbooks()
    proc = playbooks.run(_converge_playbook(), json_report=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = playbooks.report(proc)
    assert Playbooks.changed_tasks(report) == []
    probed = _probed_tasks()
    assert len(probed) > 40  # the roles' probed tasks were found
    assert any(task["task"]["name"] in probed for play in report["plays"] for task in play["tasks"])
    ran = [
        f"{host}: {task['task']['name']}"
        for play in report["plays"]
        for task in play["tasks"]
        if task["task"]["name"] in probed
        for host, result in task["hosts"].items()
        if not result.get("skipped")
    ]
    assert ran == [], "probe entries that do not match their task:\n" + "\n".join(ran)
