"""build_artifact.py: bad input changes nothing; the broken build installs offline,
starts, serves /health and fails /ready, as the release tests need."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest
from helpers import SERVICE_DIR, Server, write_config

BUILD = [sys.executable, str(SERVICE_DIR / "build_artifact.py")]
# The targets' interpreter (Debian 12 python3.11); the build machine is Debian 12 too.
TARGET_PYTHON = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable


@pytest.mark.parametrize("version", ["1.2", "v1.2.3", "01.2.3", "1.2.3.4", "1.2.x", ""])
def test_bad_version_is_refused_and_nothing_written(tmp_path, version):
    out = tmp_path / "dist"
    result = subprocess.run(
        [*BUILD, "--version", version, "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "semantic version" in result.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def broken_release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [*BUILD, "--version", "7.8.9", "--broken", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    tarball = out / "schema-registry-7.8.9.tar.gz"
    expected = (out / "schema-registry-7.8.9.tar.gz.sha256").read_text().split()[0]
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == expected
    unpacked = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(tarball) as archive:
        assert {m.name.split("/")[0] for m in archive.getmembers()} == {"schema-registry-7.8.9"}
        archive.extractall(unpacked, filter="data")
    return unpacked / "schema-registry-7.8.9"


def test_manifest_lists_version_flag_migrations_and_file_hashes(broken_release):
    manifest = json.loads((broken_release / "manifest.json").read_text())
    assert manifest["name"] == "schema-registry"
    assert manifest["version"] == "7.8.9"
    assert manifest["broken"] is True
    assert manifest["python_tag"] == "cp311"
    assert manifest["migrations"][0] == "0001_initial"
    for entry in manifest["files"]:
        digest = hashlib.sha256((broken_release / entry["path"]).read_bytes()).hexdigest()
        assert digest == entry["sha256"]
    check = subprocess.run(
        ["sha256sum", "--check", "--quiet", "SHA256SUMS"], cwd=broken_release, check=False
    )
    assert check.returncode == 0


def test_installs_offline_and_broken_build_fails_ready(broken_release, migrated_db, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([TARGET_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            str(broken_release / "wheels"),
            "schema-registry==7.8.9",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    version = subprocess.run(
        [str(venv / "bin" / "schema-registry"), "version", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(version.stdout)["broken"] is True
    server = Server(write_config(tmp_path, migrated_db, None), venv / "bin" / "schema-registry")
    server.start()
    try:
        health = httpx.get(server.url + "/health").json()
        assert health["version"] == "7.8.9"
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 503
        assert "broken build" in ready.json()["reason"]
        assert 'broken="true"' in httpx.get(server.metrics_url).text
    finally:
        server.stop()
