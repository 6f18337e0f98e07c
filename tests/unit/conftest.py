"""Fixtures shared by the unit tests: real helper processes on loopback."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ (mock_llm_server) and tests/unit (test_release_lib): pytest puts the latter on
# sys.path by itself, ansible-test units (which loads this file through the collection
# loader) does not.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mock_llm_server.process import free_port
from test_release_lib import PYTHON, build_artifact, perform_release


@pytest.fixture
def pushgateway() -> Iterator[str]:
    """A real Prometheus Pushgateway on a free loopback port; its base URL."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed (`make deps` installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _attempt in range(100):
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1).close()  # noqa: S310 - loopback
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# The release tree fixtures of test_release.py, test_rollback.py, test_release_interrupt.py
# and test_instance_switch.py: real artifacts installed with real pip, built once.
@pytest.fixture(scope="session", name="artifacts")
def artifacts_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    return {v: build_artifact(out, v) for v in ("1.0.0", "1.1.0", "1.2.0", "2.0.0")}


@pytest.fixture(scope="session", name="built_tree")
def built_tree_fixture(
    tmp_path_factory: pytest.TempPathFactory, artifacts: dict[str, Path]
) -> Path:
    """A tree with 1.0.0 then 1.1.0 released (1.1.0 active), built once per session."""
    root = tmp_path_factory.mktemp("base") / "opt"
    for version in ("1.0.0", "1.1.0"):
        perform_release(
            path=str(root), version=version, artifact=str(artifacts[version]), python=PYTHON
        )
    return root


@pytest.fixture(name="tree")
def tree_fixture(tmp_path: Path, built_tree: Path) -> Path:
    """A private copy of built_tree (symlinks kept as links)."""
    root = tmp_path / "opt"
    shutil.copytree(built_tree, root, symlinks=True)
    return root
