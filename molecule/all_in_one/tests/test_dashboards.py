"""Every panel query of every Grafana dashboard returns data from the all_in_one
Prometheus (issue 6), the registry dashboard included: this is the one scenario with
the registry and Prometheus together. Before the queries run, the test makes the data
the panels show: registry traffic through the load balancer (register, get, validate),
a PostgreSQL backup, and two benchmark pushes to the Pushgateway (the lab has no LLM
endpoint for the scheduled benchmark to measure).

Only this scenario runs this file (multi_host has no monitoring host).
"""

from __future__ import annotations

import os
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
from lab_http import http_json

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


def registry_traffic(lb_url: str, key: str) -> None:
    """Registers schemas, reads each several times (cache misses then hits, on both
    instances behind the load balancer) and validates good and bad data."""
    for _attempt in range(5):
        subject = f"molecule.dashboards.prompt_{uuid.uuid4().hex[:8]}"
        status, created = http_json(
            "POST",
            f"{lb_url}/api/v1/schemas",
            {"subject": subject, "schema": SCHEMA, "schema_type": "JSON"},
            key=key,
        )
        assert status == 201, created
        for _attempt in range(6):
            status, _unused = http_json("GET", f"{lb_url}/api/v1/schemas/{created['id']}")
            assert status == 200
        for data, valid in (({"prompt": "hi"}, True), ({"max_tokens": 5}, False)):
            status, verdict = http_json("POST", f"{lb_url}/api/v1/validate/{created['id']}", data)
            assert status == 200
            assert verdict["is_valid"] is valid
    status, _unused = http_json("GET", f"{lb_url}/api/v1/schemas/{uuid.uuid4()}")
    assert status == 404


def test_every_panel_query_of_every_dashboard_returns_data() -> None:
    prometheus_url = f"https://{address('monitoring')}:9090"
    db_host = RUNNER.get_hosts("db")[0]
    db = testinfra.get_host(f"ansible://{db_host}?ansible_inventory={RUNNER.inventory_file}")
    with db.sudo():
        assert db.run("systemctl start llmops-postgresql-backup.service").rc == 0
    registry_host = RUNNER.get_hosts("registry")[0]
    key = RUNNER.get_variables(registry_host)["vault_registry_api_keys"][0]["key"]
    registry_traffic(f"https://{address('lb')}:8443", key)
    push_sample_benchmark_runs(f"https://{address('monitoring')}:9091", PUSH_PAUSE_S)
    wait_for(
        lambda: query_result(prometheus_url, "postgresql_backup_last_success_timestamp_seconds"),
        90,
        "the backup metric scraped from the textfile collector",
    )

    # The HA dashboards have data only where a Patroni cluster, Sentinel or keepalived
    # runs: not on one host.
    ha_boards = frozenset({"database-ha", "cache-lb-ha"})
    queries = panel_queries(skip_uids=ha_boards)
    assert {query.dashboard for query in queries} == dashboard_uids() - ha_boards
    assert len(queries) > 30
    empty = queries_without_data(prometheus_url, queries, timeout_s=120)
    assert [str(query) for query in empty] == []
