"""The scrape jobs the dashboards and alerts select on (job="schema-registry",
job="redis", the host label, ...) as the prometheus role generates them from an
inventory: rendered by ansible-playbook from the role's real template, then checked
by promtool and read back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "prometheus"
HOSTS = {
    "app1": ("192.0.2.11", ["registry"]),
    "app2": ("192.0.2.12", ["registry"]),
    "data1": ("192.0.2.21", ["db", "cache"]),
    "lb1": ("192.0.2.31", ["lb"]),
    "mon1": ("192.0.2.41", ["monitoring"]),
}

PLAYBOOK = """
- name: Render prometheus.yml like the role does
  hosts: mon1
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
    role_path: {role}
  tasks:
    - name: Role defaults and internal vars
      ansible.builtin.include_vars:
        file: "{{{{ item }}}}"
      loop:
        - "{role}/defaults/main.yml"
        - "{role}/vars/main.yml"
        - "{role}/../monitoring_web/defaults/main.yml"
        - "{role}/../monitoring_web/vars/main.yml"
    - name: Render
      ansible.builtin.template:
        src: "{role}/templates/prometheus.yml.j2"
        dest: "{out}/prometheus.yml"
        mode: "0644"
"""


def inventory() -> dict:
    groups: dict[str, dict] = {}
    hosts = {}
    for name, (address, member_of) in HOSTS.items():
        hosts[name] = {"ansible_default_ipv4": {"address": address}}
        for group in member_of:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = {}
    return {"all": {"hosts": hosts, "children": groups}}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("prometheus")
    (out / "inventory.yml").write_text(json.dumps(inventory()))
    (out / "render.yml").write_text(PLAYBOOK.format(role=ROLE, out=out))
    binary = shutil.which("ansible-playbook") or str(REPO / ".venv/bin/ansible-playbook")
    result = subprocess.run(
        [binary, "-i", str(out / "inventory.yml"), str(out / "render.yml")],
        cwd=REPO,
        env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(out / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return yaml.safe_load((out / "prometheus.yml").read_text())


def targets(config: dict, job: str) -> dict[str, dict]:
    (scrape,) = [s for s in config["scrape_configs"] if s["job_name"] == job]
    return {t["targets"][0]: t["labels"] for t in scrape["static_configs"]}


def test_registry_job_scrapes_both_instances_of_every_registry_host(config: dict) -> None:
    assert set(targets(config, "schema-registry")) == {
        "192.0.2.11:9181",
        "192.0.2.11:9182",
        "192.0.2.12:9181",
        "192.0.2.12:9182",
    }


def test_node_job_covers_every_host_with_its_inventory_name(config: dict) -> None:
    found = targets(config, "node")
    assert {labels["host"] for labels in found.values()} == set(HOSTS)
    assert found["192.0.2.21:9100"]["instance"] == "data1:9100"


def test_data_store_lb_and_monitoring_jobs(config: dict) -> None:
    assert set(targets(config, "postgres")) == {"192.0.2.21:9187"}
    assert set(targets(config, "redis")) == {"192.0.2.21:9121"}
    assert set(targets(config, "haproxy")) == {"192.0.2.31:8404"}
    assert set(targets(config, "prometheus")) == {"192.0.2.41:9090"}
    assert set(targets(config, "alertmanager")) == {"192.0.2.41:9093"}
    (push,) = [s for s in config["scrape_configs"] if s["job_name"] == "pushgateway"]
    assert push["honor_labels"] is True


def test_alerts_go_to_the_monitoring_hosts_alertmanager(config: dict) -> None:
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"] == ["192.0.2.41:9093"]


WEB_JOBS = ("prometheus", "alertmanager", "pushgateway", "node", "postgres")
CA = "/etc/llmops/tls/ca.crt"
PASSWORD_FILE = "/etc/prometheus/monitoring-web.password"  # noqa: S105 - a path


def test_the_monitoring_stack_is_scraped_over_https_with_the_login(config: dict) -> None:
    """Role monitoring_web: https checked against the CA (no skip), basic auth with the
    password in a file (never in prometheus.yml); redis_exporter by client certificate."""
    jobs = {s["job_name"]: s for s in config["scrape_configs"]}
    for name in WEB_JOBS:
        job = jobs[name]
        assert job["scheme"] == "https", name
        assert job["tls_config"] == {"ca_file": CA, "min_version": "TLS12"}, name
        assert job["basic_auth"] == {"username": "monitoring", "password_file": PASSWORD_FILE}
    redis = jobs["redis"]
    assert redis["scheme"] == "https"
    assert redis["tls_config"]["ca_file"] == CA
    assert redis["tls_config"]["cert_file"] == "/etc/llmops/tls/server.crt"
    assert redis["tls_config"]["key_file"] == "/etc/llmops/tls/server.key"
    assert "basic_auth" not in redis
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["scheme"] == "https"
    assert manager["basic_auth"]["password_file"] == PASSWORD_FILE
    assert "insecure_skip_verify" not in str(config)


def test_registry_and_redis_jobs_show_the_client_certificate(config: dict) -> None:
    """The registry's /metrics and redis_exporter ask for a client certificate from the
    CA instead of a login: Prometheus scrapes them over https showing its host's."""
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in ("schema-registry", "redis"):
        assert jobs[name]["scheme"] == "https", name
        assert jobs[name]["tls_config"] == {
            "ca_file": "/etc/llmops/tls/ca.crt",
            "cert_file": "/etc/llmops/tls/server.crt",
            "key_file": "/etc/llmops/tls/server.key",
            "min_version": "TLS12",
        }, name
        assert "basic_auth" not in jobs[name], name
