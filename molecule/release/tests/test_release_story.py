"""What side_effect recorded: each step's outcome and the failed requests under load."""

import json
import os
from pathlib import Path

import pytest

# Reads files on the controller; "lb" (one host) only makes the tests run once.
testinfra_hosts = ["lb"]

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


def test_no_request_failed_through_the_load_balancer():
    summary = json.loads((WORK / "loadgen.json").read_text())
    assert summary["requests"] > 100
    assert summary["failed"] == 0, summary["failures"][:10]
    assert {"2.0.0", "1.0.0"} <= set(summary["versions_seen"])
    assert "3.0.0" not in summary["versions_seen"]
