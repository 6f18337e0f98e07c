"""What side_effect recorded: each step's outcome and the failed requests under load."""

import json
import os
import re
from pathlib import Path

import pytest

# Reads files on the controller; lb1 (one host) only makes the tests run once.
testinfra_hosts = ["lb1"]

WORK = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "release"


@pytest.fixture(scope="module")
def steps():
    return {step["name"]: step for step in json.loads((WORK / "steps.json").read_text())}


def test_release_of_2_0_0_succeeds(steps):
    assert steps["release 2.0.0"]["rc"] == 0, steps["release 2.0.0"]["tail"]


def test_broken_release_fails_naming_the_gate_and_rolls_back(steps):
    step = steps["release broken 3.0.0"]
    assert step["rc"] != 0
    text = "\n".join(step["tail"])
    assert "failed gate 'ready'" in text, text
    assert "rolled back to 2.0.0" in text, text


def test_rollback_to_1_0_0_succeeds(steps):
    assert steps["rollback to 1.0.0"]["rc"] == 0, steps["rollback to 1.0.0"]["tail"]


@pytest.mark.parametrize("lb", ["lb1", "lb2"])
def test_no_request_failed_through_either_load_balancer(lb):
    summary = json.loads((WORK / f"loadgen-{lb}.json").read_text())
    assert summary["requests"] > 100
    assert summary["failed"] == 0, summary["failures"][:10]
    assert {"2.0.0", "1.0.0"} <= set(summary["versions_seen"])
    assert "3.0.0" not in summary["versions_seen"]


def test_release_without_an_artifact_is_refused_and_builds_nothing(steps):
    step = steps["release 9.9.9 without artifact"]
    text = " ".join(" ".join(step["tail"]).split())  # the YAML callback may fold lines
    assert step["rc"] != 0, text
    assert "no artifact" in text and "build_artifact=true" in text, text
    assert not Path("/var/tmp/llmops-release/dist/schema-registry-9.9.9.tar.gz").exists()  # noqa: S108
    log = (WORK / "step-release_9.9.9_without_artifact.log").read_text()
    assert "Take the run lock" not in log and "Install the release" not in log, log[-2000:]


def test_second_release_while_one_runs_is_refused_naming_the_holder(steps):
    step = steps["second release while one runs"]
    text = " ".join(" ".join(step["tail"]).split())  # the YAML callback may fold lines
    assert step["rc"] != 0, text
    assert "holds the run lock" in text, text
    # who, which playbook, when, where: the holder is release 2.0.0's ansible-playbook
    assert re.search(r"release\.yml started \S+ by \S+ on controller \S+, pid \d+", text), text
    assert "force_unlock=" in text, text
    log = (WORK / "step-second_release_while_one_runs.log").read_text()
    # refused before any host was touched
    assert "Prepare the release" not in log and "Take the instance out" not in log, log[-3000:]


def _delegations(log: str, task: str) -> set[tuple[str, str]]:
    """(registry host, lb host) pairs the named task ran for, from a step's output."""
    pairs: set[tuple[str, str]] = set()
    # tasks a handler includes print as RUNNING HANDLER, not TASK
    for section in re.split(r"\n(?:TASK|RUNNING HANDLER) \[", log)[1:]:
        header, _unused, body = section.partition("\n")
        if task in header:
            pairs |= set(re.findall(r"^(?:changed|ok): \[(registry\d) -> (lb\d)", body, re.M))
    return pairs


@pytest.mark.parametrize(
    ("step_log", "drain", "enable"),
    [
        (
            "step-release_2.0.0.log",
            "Take the instance out of every HAProxy",
            "Put the instance back into every HAProxy",
        ),
        (
            "step-rollback_to_1.0.0.log",
            "Take the whole host out of",
            "Put every instance back into HAProxy",
        ),
    ],
)
def test_release_and_rollback_drain_and_enable_on_every_lb(step_log, drain, enable):
    log = (WORK / step_log).read_text()
    every = {(r, lb) for r in ("registry1", "registry2") for lb in ("lb1", "lb2")}
    assert _delegations(log, drain) == every, log[-3000:]
    assert _delegations(log, enable) == every, log[-3000:]


@pytest.fixture(scope="module")
def deploy_after():
    rc, _unused, stderr = (WORK / "deploy_after.rc").read_text().partition("\n")
    return int(rc), stderr, json.loads((WORK / "deploy_after.json").read_text())


def test_deploy_after_a_rollback_is_a_no_op_and_keeps_the_rolled_back_release(
    deploy_after, playbooks
):
    rc, stderr, report = deploy_after
    assert rc == 0, stderr[-3000:]
    assert playbooks.changed_tasks(report) == []
    pruned = [
        result.get("pruned")
        for play in report["plays"]
        for task in play["tasks"]
        for result in task["hosts"].values()
        if result.get("pruned")
    ]
    assert pruned == []


def test_a_changed_setting_restarts_instances_drained_on_every_lb(steps):
    """deploy.yml with a new setting restarts through the handler, each instance drained first."""
    step = steps["config change under load"]
    assert step["rc"] == 0, step["tail"]
    log = (WORK / "step-config_change.log").read_text()
    every = {(r, lb) for r in ("registry1", "registry2") for lb in ("lb1", "lb2")}
    seen = [line for line in log.splitlines() if "HAProxy" in line or "-> lb" in line][:80]
    drained = _delegations(log, "out of every HAProxy while another server is UP")
    assert drained == every, seen
    assert _delegations(log, "back into the HAProxy that drained it") == every, seen
    # both instances of each host, one after the other
    for instance in ("a", "b"):
        assert f"Restart schema-registry@{instance}" in log, log[-3000:]
