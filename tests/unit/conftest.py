"""Fixtures shared by the unit tests: real helper processes on loopback."""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class SecuredGateway:
    url: str
    ca_file: str
    user: str
    password: str

    def get(self, path: str) -> str:
        """GET over https with the CA and the login; the body."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 - our own gateway
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return response.read().decode()


def _issue_loopback_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=unit test CA",
    )
    openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    )
    return folder / "ca.crt", folder / "server.crt", folder / "server.key"


@pytest.fixture
def loopback_certificate(tmp_path_factory: pytest.TempPathFactory):
    """Issues (CA, certificate, key) for 127.0.0.1 into a fresh folder per call."""

    def issue(name: str) -> tuple[Path, Path, Path]:
        return _issue_loopback_certificate(tmp_path_factory.mktemp(name))

    return issue


@pytest.fixture
def secured_pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredGateway]:
    """A real Pushgateway behind the web config role monitoring_web writes: TLS from a
    throwaway CA (127.0.0.1) and basic auth with a bcrypt hash."""
    from passlib.hash import bcrypt  # noqa: PLC0415 - the controller's pinned passlib

    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed (`make deps` installs it)")
    folder = tmp_path_factory.mktemp("secured-gateway")
    ca, cert, key = _issue_loopback_certificate(folder)
    password = "unit-test-web-password"  # noqa: S105 - throwaway gateway
    web = folder / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS12\n"
        f"basic_auth_users:\n  monitoring: {bcrypt.using(rounds=4).hash(password)}\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", f"--web.config.file={web}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"https://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(ca))
    try:
        for _attempt in range(100):
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1, context=context).close()  # noqa: S310 - loopback
                break
            except urllib.error.HTTPError:
                break  # it answers (401 without credentials)
            except OSError:
                time.sleep(0.05)
        yield SecuredGateway(url, str(ca), "monitoring", password)
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
