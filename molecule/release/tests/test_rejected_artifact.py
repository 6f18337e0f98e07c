"""A release whose artifact does not match its .sha256 (issue 18), on the lab after the
release story (every host on 1.0.0): release.yml fails naming the mismatch, and nothing
stays on the registry hosts: no copy of the rejected artifact, no release folder, no run
lock (the next release or rollback must not find one); current and the instances are
untouched."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

testinfra_hosts = ["registry"]

DIST = Path("/var/tmp/llmops-release/dist")  # noqa: S108 - the scenario's artifact folder
VERSION = "4.0.0"
ROOT = "/opt/schema-registry"


@pytest.fixture(scope="module")
def rejected(playbooks, tmp_path_factory):
    """release.yml -e version=4.0.0 with a .sha256 that names other bytes."""
    folder = tmp_path_factory.mktemp("bad-dist")
    artifact = folder / f"schema-registry-{VERSION}.tar.gz"
    shutil.copyfile(DIST / "schema-registry-2.0.0.tar.gz", artifact)
    other = hashlib.sha256(b"not the artifact").hexdigest()
    (folder / f"{artifact.name}.sha256").write_text(f"{other}  {artifact.name}\n")
    return playbooks.run(
        "playbooks/release.yml",
        "-e",
        f"version={VERSION}",
        "-e",
        f"schema_registry_artifact_dir={folder}",
    )


def test_the_release_fails_naming_the_mismatch(rejected):
    text = " ".join((rejected.stdout + rejected.stderr).split())
    assert rejected.returncode != 0, text[-3000:]
    assert "checksum mismatch" in text, text[-3000:]
    assert "the run lock is given back" in text, text[-3000:]


def test_nothing_of_the_rejected_release_stays_on_the_host(rejected, host):
    assert not host.file(f"/var/cache/schema-registry/schema-registry-{VERSION}.tar.gz").exists
    assert not host.file(f"{ROOT}/releases/{VERSION}").exists
    leftovers = host.run(f"find {ROOT}/releases -maxdepth 1 -name '.*'").stdout.strip()
    assert leftovers == "", leftovers


def test_the_run_lock_is_given_back(rejected, host):
    assert not host.file(f"{ROOT}/run-lock.json").exists


def test_current_and_the_instances_are_untouched(rejected, host):
    assert host.file(f"{ROOT}/current").linked_to == f"{ROOT}/releases/1.0.0"
    for port in (8081, 8082):
        health = host.check_output(f"curl -fsS http://127.0.0.1:{port}/health")
        assert '"version":"1.0.0"' in health.replace(" ", ""), health
