"""The monitoring stack's listeners behind TLS and a login (role monitoring_web, issue
15): asked from the monitoring host, every one refuses a request without credentials,
with a wrong password and over plain http, and answers one with the CA and the stack's
user (redis_exporter: a client certificate from the CA); Prometheus scrapes them all
and notifies Alertmanager over https, every target up; a push without credentials is
refused."""

from __future__ import annotations

import os

import testinfra
import testinfra.utils.ansible_runner
from dashboard_checks import prometheus_api, wait_for
from monitoring_web import (
    WEB_JOBS,
    listeners,
    push_is_refused,
    refusals,
)

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
MONITORING = RUNNER.get_hosts("monitoring")[0]


def _address(host: str) -> str:
    return RUNNER.get_variables(host)["ansible_host"]


def _groups() -> dict[str, list[str]]:
    return {
        group: RUNNER.get_hosts(group)
        for group in ("monitoring", "db", "cache", "registry", "lb", "bench")
    }


def test_every_listener_asks_for_tls_and_credentials() -> None:
    node = testinfra.get_host(f"ansible://{MONITORING}?ansible_inventory={RUNNER.inventory_file}")
    found = listeners(_groups(), RUNNER.get_hosts("all"))
    assert {name for name, *_rest in found} == {
        "prometheus",
        "alertmanager",
        "pushgateway",
        "node_exporter",
        "postgres_exporter",
        "redis_exporter",
        "registry_a",
        "registry_b",
    }
    wrong = []
    for _name, host, port, client_cert in found:
        wrong += refusals(node, _address(host), port, client_cert)
    assert wrong == []


def test_every_target_is_up_over_https() -> None:
    base = f"https://{_address(MONITORING)}:9090"

    def all_up():
        targets = prometheus_api(base, "/api/v1/targets")["activeTargets"]
        down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
        return targets if targets and not down else None

    targets = wait_for(all_up, 90, "every target up")
    web = [t["scrapeUrl"] for t in targets if t["labels"]["job"] in WEB_JOBS]
    assert {t["labels"]["job"] for t in targets} >= WEB_JOBS
    assert all(url.startswith("https://") for url in web), web
    alertmanagers = prometheus_api(base, "/api/v1/alertmanagers")["activeAlertmanagers"]
    assert alertmanagers and all(a["url"].startswith("https://") for a in alertmanagers)


def test_a_push_without_credentials_is_refused() -> None:
    push_is_refused(_address(MONITORING))
