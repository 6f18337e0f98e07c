"""Role monitoring_web: the preflight refuses a missing, placeholder or too long password
without printing it, and the web config it renders (exporter-toolkit format) is stable
across runs (bcrypt salt from the host name), passes `promtool check web-config` and,
served by a real Pushgateway, refuses requests without the login or over plain http."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import _issue_loopback_certificate
from mock_llm_server.process import free_port
from passlib.hash import bcrypt

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "monitoring_web"
PASSWORD = "unit-test-Web-password-91"  # noqa: S105 - throwaway

PREFLIGHT = """
- name: Run the monitoring_web preflight only
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Preflight
      ansible.builtin.include_role:
        name: llmops.registry.monitoring_web
        tasks_from: preflight
"""

RENDER = """
- name: Render the web config as the roles of the stack write it
  hosts: all
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: The stack's web settings
      ansible.builtin.import_role:
        name: llmops.registry.monitoring_web
        tasks_from: defaults
    - name: Write it
      ansible.builtin.copy:
        content: "{{{{ __monitoring_web_config }}}}"
        dest: "{out}/{{{{ inventory_hostname }}}}.yml"
        mode: "0600"
"""


def playbook(path: Path, text: str, *args: str) -> subprocess.CompletedProcess:
    path.write_text(text)
    binary = shutil.which("ansible-playbook") or str(REPO / ".venv/bin/ansible-playbook")
    return subprocess.run(
        [binary, *args, str(path)],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "password",
    ["", "CHANGE_ME-monitoring-web-password", "x" * 73],
    ids=["empty", "placeholder", "too-long"],
)
def test_preflight_refuses_without_printing_the_password(tmp_path: Path, password: str) -> None:
    extra = json.dumps({"monitoring_web_password": password})
    done = playbook(tmp_path / "p.yml", PREFLIGHT, "-i", "localhost,", "-e", extra)
    assert done.returncode != 0
    assert "monitoring_web_password" in done.stdout
    if password:
        assert password not in done.stdout + done.stderr


def test_preflight_accepts_a_real_password_or_no_basic_auth(tmp_path: Path) -> None:
    for extra in ({"monitoring_web_password": PASSWORD}, {"monitoring_web_basic_auth": False}):
        done = playbook(tmp_path / "p.yml", PREFLIGHT, "-i", "localhost,", "-e", json.dumps(extra))
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """host -> [first render, second render] (text), and the certificate files used."""
    out = tmp_path_factory.mktemp("web")
    ca, cert, key = _issue_loopback_certificate(out)
    extra = json.dumps(
        {
            "monitoring_web_password": PASSWORD,
            "monitoring_web_cert_file": str(cert),
            "monitoring_web_key_file": str(key),
        }
    )
    runs = {}
    for attempt in range(2):
        done = playbook(out / "r.yml", RENDER.format(out=out), "-i", "mon1,data1,", "-e", extra)
        assert done.returncode == 0, done.stdout + done.stderr
        assert PASSWORD not in done.stdout
        for host in ("mon1", "data1"):
            runs.setdefault(host, []).append((out / f"{host}.yml").read_text())
        if attempt == 0:
            first_changed = done.stdout.count("changed: [")
    assert first_changed == 2
    assert "changed: [" not in done.stdout  # the second run changes nothing
    return {"runs": runs, "ca": ca, "folder": out}


def test_the_config_is_stable_and_holds_only_a_bcrypt_hash(rendered: dict) -> None:
    runs = rendered["runs"]
    assert runs["mon1"][0] == runs["mon1"][1]
    config = yaml.safe_load(runs["mon1"][0])
    assert config["tls_server_config"]["min_version"] == "TLS12"
    ((user, hashed),) = config["basic_auth_users"].items()
    assert user == "monitoring"
    assert PASSWORD not in runs["mon1"][0]
    assert bcrypt.verify(PASSWORD, hashed)
    assert not bcrypt.verify("not-the-password", hashed)
    # Another host, another salt: the same password does not give the same hash.
    assert yaml.safe_load(runs["data1"][0])["basic_auth_users"]["monitoring"] != hashed


def test_promtool_accepts_it(rendered: dict) -> None:
    path = rendered["folder"] / "mon1.yml"
    done = subprocess.run(
        ["promtool", "check", "web-config", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _status(url: str, ca: Path, password: str | None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - our own gateway
    if password is not None:
        token = base64.b64encode(f"monitoring:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(ca)) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_real_listener_with_it_refuses_what_it_must(rendered: dict) -> None:
    binary = shutil.which("prometheus-pushgateway")
    assert binary, "prometheus-pushgateway is not installed (`make deps` installs it)"
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={rendered['folder'] / 'mon1.yml'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ca, url = rendered["ca"], f"https://127.0.0.1:{port}/metrics"
    try:
        for _attempt in range(100):
            try:
                _status(url, ca, None)
                break
            except OSError:
                time.sleep(0.05)
        assert _status(url, ca, PASSWORD) == 200
        assert _status(url, ca, None) == 401
        assert _status(url, ca, "not-the-password") == 401
        assert _status(f"http://127.0.0.1:{port}/metrics", ca, PASSWORD) == 400
    finally:
        proc.terminate()
        proc.wait(timeout=5)
