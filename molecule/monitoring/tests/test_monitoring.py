"""The monitoring stack end to end on lab hosts: every target up, the rules loaded,
RedisDown delivered through Alertmanager (both the on-call and the team route) and
resolved, and every Grafana dashboard query returning data from this Prometheus."""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import testinfra
import testinfra.host
import yaml

testinfra_hosts = ["monitoring"]

REPO = Path(__file__).resolve().parents[3]
RULE_FILES = sorted((REPO / "roles/prometheus/files/rules").glob("*.yml"))
DASHBOARDS = sorted((REPO / "roles/grafana/files/dashboards").glob("*.json"))
NOTIFICATIONS = "/var/lib/webhook-recorder/notifications.jsonl"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$provider": ".*"}


def instances() -> dict[str, str]:
    with open(os.environ["MOLECULE_INSTANCE_CONFIG"], encoding="utf-8") as handle:
        return {item["instance"]: item["address"] for item in yaml.safe_load(handle)}


def inventory_groups() -> dict[str, list[str]]:
    """Group -> hosts, from the scenario's platforms."""
    with open(os.environ["MOLECULE_FILE"], encoding="utf-8") as handle:
        platforms = yaml.safe_load(handle)["platforms"]
    groups: dict[str, list[str]] = {}
    for platform in platforms:
        for group in platform.get("groups", []):
            groups.setdefault(group, []).append(platform["name"])
    return groups


def other_host(name: str) -> testinfra.host.Host:
    return testinfra.get_host(
        f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"]
    )


def prometheus(path: str, **params: str) -> dict:
    url = f"http://{instances()['mon1']}:9090{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - lab address
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def wait_for(check, timeout_s: float, what: str, interval_s: float = 2.0):
    """Poll check() until it returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval_s)
    pytest.fail(f"{what} within {timeout_s:.0f} s (last seen: {last!r})")


def expected_jobs() -> set[str]:
    groups = inventory_groups()
    jobs = {"prometheus", "alertmanager", "pushgateway", "node"}
    for group, job in (
        ("registry", "schema-registry"),
        ("db", "postgres"),
        ("cache", "redis"),
        ("lb", "haproxy"),
    ):
        if groups.get(group):
            jobs.add(job)
    return jobs


def test_every_prometheus_target_is_up() -> None:
    def all_up():
        targets = prometheus("/api/v1/targets")["activeTargets"]
        down = [
            (t["labels"]["job"], t["labels"]["instance"], t["lastError"])
            for t in targets
            if t["health"] != "up"
        ]
        return (targets, down) if targets and not down else None

    targets, _ = wait_for(lambda: all_up() or None, 90, "every target up")
    assert {t["labels"]["job"] for t in targets} == expected_jobs()
    # node exporter on every host of the inventory
    nodes = {t["labels"]["host"] for t in targets if t["labels"]["job"] == "node"}
    assert nodes == set(instances())


def test_every_alert_rule_is_loaded_with_the_scenario_override() -> None:
    defined = set()
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            defined |= {rule["alert"] for rule in group["rules"] if "alert" in rule}
    loaded = {
        rule["name"]: rule
        for group in prometheus("/api/v1/rules", type="alert")["groups"]
        for rule in group["rules"]
    }
    assert set(loaded) == defined
    assert loaded["RedisDown"]["duration"] == 10
    assert all(rule["health"] == "ok" for rule in loaded.values())


def notifications(host: testinfra.host.Host) -> list[dict]:
    with host.sudo():
        content = host.run("cat %s", NOTIFICATIONS).stdout
    return [json.loads(line) for line in content.splitlines() if line.strip()]


def redis_down_notes(host: testinfra.host.Host, status: str, since: int) -> set[str]:
    """Receiver paths that got a RedisDown notification with this status."""
    paths = set()
    for note in notifications(host)[since:]:
        for alert in note["body"].get("alerts", []):
            if alert["labels"].get("alertname") == "RedisDown" and alert["status"] == status:
                paths.add(note["path"])
    return paths


def test_redis_down_reaches_both_receivers_and_resolves(host: testinfra.host.Host) -> None:
    data = other_host(inventory_groups()["cache"][0])
    before = len(notifications(host))
    with data.sudo():
        assert data.run("systemctl stop redis-server").rc == 0
    try:
        wait_for(
            lambda: redis_down_notes(host, "firing", before) == {"/oncall", "/platform"},
            120,
            "RedisDown firing at /oncall and /platform",
        )
    finally:
        with data.sudo():
            assert data.run("systemctl start redis-server").rc == 0
    wait_for(
        lambda: redis_down_notes(host, "resolved", before) == {"/oncall", "/platform"},
        120,
        "RedisDown resolved at /oncall and /platform",
    )


def push_sample_benchmark_runs() -> None:
    """Two pushes of the benchmark module's own exposition, the counters growing in
    between, so rate() over the pushed series has something to work with."""
    spec = importlib.util.spec_from_file_location(
        "llm_bench_prom", REPO / "plugins/module_utils/llm_bench/prom.py"
    )
    prom = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prom)
    labels = {"provider": "molecule", "model": "sample-model", "endpoint": "http://sample"}
    requests = [
        {
            "error_type": None,
            "e2e_s": 1.5 + i / 10,
            "ttft_s": 0.2,
            "tpot_s": 0.02,
            "output_tokens": 64,
            "input_tokens": 32,
        }
        for i in range(9)
    ] + [
        {
            "error_type": "incomplete_stream",
            "e2e_s": None,
            "ttft_s": None,
            "tpot_s": None,
            "output_tokens": 0,
            "input_tokens": 32,
        }
    ]
    summary = {
        "scheduling_lag_s": {"count": 10, "p50": 0.001, "p99": 0.004, "max": 0.005, "mean": 0.002},
        "request_throughput": 2.0,
    }
    state = prom.empty_state()
    url = f"http://{instances()['mon1']}:9091"
    for _ in range(2):
        prom.accumulate(state, {"requests": requests}, labels)
        text = prom.exposition(state, summary, labels)
        prom.push(url, "llm_benchmark", {"instance": "molecule", "endpoint": "sample"}, text)
        time.sleep(12)  # two scrapes at 5 s


def test_every_dashboard_query_returns_data() -> None:
    push_sample_benchmark_runs()
    db = other_host(inventory_groups()["db"][0])
    with db.sudo():
        assert db.run("systemctl start llmops-postgresql-backup.service").rc == 0
    wait_for(
        lambda: prometheus(
            "/api/v1/query", query="postgresql_backup_last_success_timestamp_seconds"
        )["result"],
        60,
        "the backup metric scraped from the textfile collector",
    )
    registry_present = bool(inventory_groups().get("registry"))
    empty, checked = [], 0
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        if board["uid"] == "registry-overview" and not registry_present:
            continue  # no registry host in this scenario: reported by the next test
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(name, value)
                checked += 1
                if not prometheus("/api/v1/query", query=expr)["result"]:
                    empty.append(f"{board['uid']} / {panel['title']}: {expr}")
    assert checked > 20
    assert empty == []


def test_registry_dashboard_needs_a_registry_host() -> None:
    if not inventory_groups().get("registry"):
        pytest.skip("no registry host in this scenario: registry-overview queries not run")
