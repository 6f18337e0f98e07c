"""Every panel query of every Grafana dashboard returns data from the all_in_one
Prometheus (issue 6), the registry dashboard included: this is the one scenario with
the registry and Prometheus together. Before the queries run, the test makes the data
the panels show: registry traffic through the load balancer (register, get, validate),
a PostgreSQL backup, and two benchmark pushes to the Pushgateway (the lab has no LLM
endpoint for the scheduled benchmark to measure).

Only this scenario runs this file (multi_host has no monitoring host).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid

import testinfra
import testinfra.utils.ansible_runner
from dashboard_checks import (
    dashboard_uids,
    panel_queries,
    push_sample_benchmark_runs,
    queries_without_data,
    query_result,
    wait_for,
)

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}, "max_tokens": {"type": "integer"}},
    "required": ["prompt"],
}
# A pause longer than the role's 15 s scrape interval between the two benchmark pushes.
PUSH_PAUSE_S = 20


def address(group: str) -> str:
    return RUNNER.get_variables(RUNNER.get_hosts(group)[0])["ansible_host"]


def http(method: str, url: str, body: dict | None = None, key: str | None = None):
    data = json.dumps(body).encode() if body is not None else None
    # Only http:// URLs built from lab host addresses reach here.
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def registry_traffic(lb_url: str, key: str) -> None:
    """Registers schemas, reads each several times (cache misses then hits, on both
    instances behind the load balancer) and validates good and bad data."""
    for _ in range(5):
        subject = f"molecule.dashboards.prompt_{uuid.uuid4().hex[:8]}"
        status, created = http(
            "POST",
            f"{lb_url}/api/v1/schemas",
            {"subject": subject, "schema": SCHEMA, "schema_type": "JSON"},
            key=key,
        )
        assert status == 201, created
        for _ in range(6):
            status, _ = http("GET", f"{lb_url}/api/v1/schemas/{created['id']}")
            assert status == 200
        for data, valid in (({"prompt": "hi"}, True), ({"max_tokens": 5}, False)):
            status, verdict = http("POST", f"{lb_url}/api/v1/validate/{created['id']}", data)
            assert status == 200
            assert verdict["is_valid"] is valid
    status, _ = http("GET", f"{lb_url}/api/v1/schemas/{uuid.uuid4()}")
    assert status == 404


def test_every_panel_query_of_every_dashboard_returns_data() -> None:
    prometheus_url = f"http://{address('monitoring')}:9090"
    db_host = RUNNER.get_hosts("db")[0]
    db = testinfra.get_host(f"ansible://{db_host}?ansible_inventory={RUNNER.inventory_file}")
    with db.sudo():
        assert db.run("systemctl start llmops-postgresql-backup.service").rc == 0
    registry_host = RUNNER.get_hosts("registry")[0]
    key = RUNNER.get_variables(registry_host)["vault_registry_api_keys"][0]["key"]
    registry_traffic(f"http://{address('lb')}:8080", key)
    push_sample_benchmark_runs(f"http://{address('monitoring')}:9091", PUSH_PAUSE_S)
    wait_for(
        lambda: query_result(prometheus_url, "postgresql_backup_last_success_timestamp_seconds"),
        90,
        "the backup metric scraped from the textfile collector",
    )

    queries = panel_queries()
    assert {query.dashboard for query in queries} == dashboard_uids()
    assert len(queries) > 30
    empty = queries_without_data(prometheus_url, queries, timeout_s=120)
    assert [str(query) for query in empty] == []
