"""Behaviour of a deployed stack, checked from the controller and on the hosts.

Shared by the all_in_one and multi_host scenarios (multi_host links this file):
what runs where comes from the inventory groups, never from the scenario name.
"""

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

# molecule/shared, found from this file's real place (multi_host links it).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from lab_http import http_json

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
INSTANCES = {"a": 8081, "b": 8082}


def _hosts(group: str) -> list[str]:
    return RUNNER.get_hosts(group)


def _var(host: str, name: str):
    return RUNNER.get_variables(host)[name]


def _node(host: str):
    return testinfra.get_host(
        f"ansible://{host}?ansible_inventory={RUNNER.inventory_file}", sudo=True
    )


def _address(host: str) -> str:
    return _var(host, "ansible_host")


def _api_key() -> str:
    return _var(_hosts("registry")[0], "vault_registry_api_keys")[0]["key"]


@pytest.fixture(scope="module")
def lb_url() -> str:
    return f"https://{_address(_hosts('lb')[0])}:8443"


def test_schema_registered_through_the_load_balancer_can_be_fetched(lb_url):
    subject = f"molecule.checks.prompt_{uuid.uuid4().hex[:8]}"
    schema = {
        "type": "object",
        "properties": {"prompt": {"type": "string"}, "max_tokens": {"type": "integer"}},
        "required": ["prompt"],
    }
    status, created = http_json(
        "POST",
        f"{lb_url}/api/v1/schemas",
        {"subject": subject, "schema": schema, "schema_type": "JSON"},
        key=_api_key(),
    )
    assert status == 201, created
    status, fetched = http_json("GET", f"{lb_url}/api/v1/schemas/{created['id']}")
    assert status == 200
    assert fetched["id"] == created["id"]
    stored = fetched["schema"]
    if isinstance(stored, str):
        stored = json.loads(stored)
    assert stored == schema
    status, verdict = http_json(
        "POST", f"{lb_url}/api/v1/validate/{created['id']}", {"max_tokens": 5}
    )
    assert status == 200
    assert verdict["is_valid"] is False


def test_writes_without_an_api_key_are_refused(lb_url):
    status, body = http_json(
        "POST",
        f"{lb_url}/api/v1/schemas",
        {"subject": "molecule.noauth", "schema": {"type": "string"}, "schema_type": "JSON"},
    )
    assert status == 401
    assert body["error_code"]


@pytest.mark.parametrize("host", _hosts("registry"))
@pytest.mark.parametrize("slot", sorted(INSTANCES))
def test_every_instance_is_ready_and_serves_the_inventory_version(host, slot):
    # The instances' ports are open to the lb hosts only: ask from the first one.
    lb = _node(_hosts("lb")[0])
    url = f"http://{_address(host)}:{INSTANCES[slot]}"
    health = json.loads(lb.check_output(f"curl -sS --fail --max-time 10 {url}/health"))
    assert health["status"] == "healthy"
    assert health["version"] == _var(host, "schema_registry_version")
    ready = lb.check_output(f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 10 {url}/ready")
    assert ready == "200"


@pytest.mark.parametrize("host", _hosts("registry"))
def test_service_runs_unprivileged_under_its_own_user(host):
    node = _node(host)
    for slot in INSTANCES:
        unit = node.service(f"schema-registry@{slot}")
        assert unit.is_running
        assert unit.is_enabled
        pid = node.check_output(f"systemctl show -p MainPID --value schema-registry@{slot}")
        owner = node.check_output(f"ps -o user= -p {pid}")
        assert owner == "schema-registry"


@pytest.mark.parametrize("host", _hosts("registry"))
def test_systemd_exposure_of_the_unit_is_at_most_2(host):
    node = _node(host)
    report = node.check_output("systemd-analyze security --no-pager schema-registry@a.service")
    level = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", report).group(1))
    assert level <= 2.0, report


@pytest.mark.parametrize("host", _hosts("cache"))
def test_redis_refuses_clients_without_a_password(host):
    node = _node(host)
    address = _address(host)
    tls = "--tls --cacert /etc/llmops/tls/ca.crt"
    reply = node.run(f"redis-cli {tls} -h {address} -p 6379 SET schema:probe 1")
    assert "NOAUTH" in (reply.stdout + reply.stderr)
    reply = node.run(f"redis-cli {tls} -h {address} -p 6379 --user default --pass nothing PING")
    assert "PONG" not in reply.stdout
    assert "WRONGPASS" in (reply.stdout + reply.stderr)


@pytest.mark.parametrize("host", _hosts("db"))
def test_postgres_turns_away_a_host_outside_the_registry_group(host):
    # This controller is not in the registry group: the firewall drops its connection
    # (PostgreSQL is open to the registry and db hosts only), before pg_hba would refuse
    # it even with the right password.
    password = _var(host, "vault_registry_db_password")
    # Fixed argv, no shell: the Debian psql client on this controller.
    result = subprocess.run(  # noqa: S603
        [
            "/usr/bin/psql",
            "-h",
            _address(host),
            "-U",
            "schema_registry",
            "-d",
            "schema_registry",
            "-c",
            "select 1",
        ],
        env={"PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "timeout expired" in result.stderr, result.stderr
