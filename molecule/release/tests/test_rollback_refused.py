"""rollback.yml to a release no host has (issue 18), on the lab after the release story
(every host on 1.0.0): refused naming the release, nothing switched, and the run lock
given back (the next release or rollback must not find it)."""

from __future__ import annotations

import pytest

testinfra_hosts = ["registry"]

ROOT = "/opt/schema-registry"


@pytest.fixture(scope="module")
def refused(playbooks):
    return playbooks.run("playbooks/rollback.yml", "-e", "version=8.8.8")


def test_the_rollback_is_refused_naming_the_release(refused):
    text = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0, text[-3000:]
    assert "release 8.8.8 is not installed" in text, text[-3000:]
    assert "the run lock is given back" in text, text[-3000:]


def test_the_run_lock_is_given_back_and_nothing_switched(refused, host):
    assert not host.file(f"{ROOT}/run-lock.json").exists
    assert host.file(f"{ROOT}/current").linked_to == f"{ROOT}/releases/1.0.0"
