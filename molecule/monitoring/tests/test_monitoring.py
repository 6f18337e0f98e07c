"""The monitoring stack end to end on lab hosts: every listener behind TLS and a login
(refused without credentials, with a wrong password and over plain http), every target
up over https, the rules loaded, RedisDown delivered through Alertmanager (both the
on-call and the team route) and resolved, and every Grafana dashboard query but the
registry one (no registry host here) returning data from this Prometheus."""

from __future__ import annotations

import json
import os
from pathlib import Path

import testinfra
import testinfra.host
import yaml
from dashboard_checks import (
    panel_queries,
    prometheus_api,
    push_sample_benchmark_runs,
    queries_without_data,
    wait_for,
)
from monitoring_web import (
    WEB_JOBS,
    WRONG_PASSWORD,
    listeners,
    probe_on,
    push_is_refused,
    refusals,
)

from playbooks import Playbooks

testinfra_hosts = ["monitoring"]

REPO = Path(__file__).resolve().parents[3]
RULE_FILES = sorted((REPO / "roles/prometheus/files/rules").glob("*.yml"))
NOTIFICATIONS = "/var/lib/webhook-recorder/notifications.jsonl"


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


def prometheus_url() -> str:
    return f"https://{instances()['mon1']}:9090"


def prometheus(path: str, **params: str) -> dict:
    return prometheus_api(prometheus_url(), path, **params)


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

    targets, _unused = wait_for(lambda: all_up() or None, 90, "every target up")
    assert {t["labels"]["job"] for t in targets} == expected_jobs()
    # The monitoring stack's own listeners are scraped over https (CA, login).
    plain = [t["scrapeUrl"] for t in targets if t["labels"]["job"] in WEB_JOBS]
    assert plain and all(url.startswith("https://") for url in plain), plain
    alertmanagers = prometheus("/api/v1/alertmanagers")["activeAlertmanagers"]
    assert alertmanagers and all(a["url"].startswith("https://") for a in alertmanagers)
    # node exporter on every host of the inventory
    nodes = {t["labels"]["host"] for t in targets if t["labels"]["job"] == "node"}
    assert nodes == set(instances())


def test_redis_exporter_reaches_redis_over_verified_tls() -> None:
    """Redis listens with TLS only (redis_tls): redis_up 1 means the exporter connected
    with rediss:// and the internal CA (it checks the certificate and the address)."""
    data = other_host(inventory_groups()["cache"][0])
    with data.sudo():
        settings = data.file("/etc/default/prometheus-redis-exporter").content_string
    assert 'REDIS_ADDR="rediss://' in settings
    assert 'REDIS_EXPORTER_TLS_CA_CERT_FILE="/etc/llmops/tls/ca.crt"' in settings
    assert "SKIP_TLS" not in settings

    def redis_up():
        result = prometheus("/api/v1/query", query="redis_up")["result"]
        return result if result and all(r["value"][1] == "1" for r in result) else None

    wait_for(redis_up, 60, "redis_up 1 (exporter over TLS)")


def test_every_listener_asks_for_tls_and_credentials(host: testinfra.host.Host) -> None:
    """From the monitoring host (the exporters are open to it only): 401 without
    credentials and with a wrong password, 400 over plain http, 200 with the CA and the
    stack's user; redis_exporter wants a client certificate from the CA instead."""
    addresses = instances()
    found = listeners(inventory_groups(), sorted(addresses))
    assert len(found) == 7  # mon1: 3 servers + node; data1: node, postgres, redis
    wrong = []
    for _name, target, port, client_cert in found:
        wrong += refusals(host, addresses[target], port, client_cert)
    assert wrong == []


def test_a_push_without_credentials_is_refused() -> None:
    push_is_refused(instances()["mon1"])


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


def status_reports() -> dict[str, dict]:
    """host -> status.yml's report (its JSON callback report)."""
    run = Playbooks().run("playbooks/status.yml", json_report=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    return {
        name: result["msg"]
        for play in Playbooks.report(run)["plays"]
        for task in play["tasks"]
        if task["task"]["name"] == "Report"
        for name, result in task["hosts"].items()
    }


def test_redis_down_reaches_both_receivers_and_resolves(host: testinfra.host.Host) -> None:
    cache = inventory_groups()["cache"][0]
    data = other_host(cache)
    before = len(notifications(host))
    with data.sudo():
        assert data.run("systemctl stop redis-server").rc == 0
    try:
        wait_for(
            lambda: redis_down_notes(host, "firing", before) == {"/oncall", "/platform"},
            120,
            "RedisDown firing at /oncall and /platform",
        )
        # status.yml while it fires (issue 18), on a layout with the monitoring host alone.
        reports = status_reports()
    finally:
        with data.sudo():
            started = data.run("systemctl start redis-server")
            journal = data.run("journalctl -u redis-server -n 30 --no-pager").stdout
        assert started.rc == 0, f"redis-server did not start again:\n{started.stderr}\n{journal}"
    wait_for(
        lambda: redis_down_notes(host, "resolved", before) == {"/oncall", "/platform"},
        120,
        "RedisDown resolved at /oncall and /platform",
    )
    (monitoring,) = inventory_groups()["monitoring"]
    serves = reports[monitoring]["serves"]
    for name, port in (("prometheus", 9090), ("alertmanager", 9093), ("pushgateway", 9091)):
        assert any(s.startswith(f"{name} :{port}") and s.endswith(" ready") for s in serves), serves
    assert "alert inbox :9095 ready" in serves, serves
    assert any(a.startswith("RedisDown critical ") for a in reports[monitoring]["alerts_firing"])
    # The cache host says Redis is down, and which alert fires about it.
    assert any(s.startswith("redis :6379 ") and "NOT READY" in s for s in reports[cache]["serves"])
    about = reports[cache]["alerts_about_this_host"]
    assert any(a.startswith(f"RedisDown critical {cache}:") for a in about), about


def test_the_alert_inbox_wants_tls_and_the_login_and_got_the_alert(
    host: testinfra.host.Host,
) -> None:
    """Alertmanager posted RedisDown (above) to the inbox over https with the CA and the
    login; people read it the same way; without the login, or over http, nothing."""
    url = f"https://{instances()['mon1']}:9095/alerts.json"
    assert probe_on(host, url, password=None)["status"] == 401
    assert probe_on(host, url, password=WRONG_PASSWORD)["status"] == 401
    plain = probe_on(host, url.replace("https://", "http://"), password=None)
    assert plain["status"] is None and plain["body"] == "", plain
    answer = probe_on(host, url)
    assert answer["status"] == 200, answer
    names = {(a["labels"]["alertname"], a["status"]) for a in json.loads(answer["body"])}
    assert ("RedisDown", "firing") in names and ("RedisDown", "resolved") in names, names


def test_every_dashboard_query_returns_data() -> None:
    push_sample_benchmark_runs(f"https://{instances()['mon1']}:9091", pause_s=12)
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
    # No registry host here: the all_in_one scenario runs the registry-overview
    # queries (molecule/all_in_one/tests/test_dashboards.py) against live traffic.
    # The HA dashboards have data only where a Patroni cluster, Sentinel or keepalived
    # runs: not on this lab's single data host.
    queries = panel_queries(
        skip_uids=frozenset({"registry-overview", "database-ha", "cache-lb-ha"})
    )
    assert len(queries) > 20
    empty = queries_without_data(prometheus_url(), queries, timeout_s=60)
    assert [str(query) for query in empty] == []
