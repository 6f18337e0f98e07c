"""Certificate rotation (issue 15): playbooks/rotate_certs.yml, run as an operator runs
it, replaces the certificate HAProxy (8443), PostgreSQL (5432, STARTTLS) and Redis (6379,
TLS only) serve while
a client sends https requests to the registry without a pause, and not one of them
fails. The consumers are reloaded, not restarted (same main PIDs), the expiry metric
describes the new certificate (on the host and from node_exporter), and --check first
changes nothing. The monitoring stack's listeners (role monitoring_web) serve the new
certificate too, with no reload or restart at all (they read the files on every
handshake), and Prometheus still scrapes every one of them."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
from dashboard_checks import prometheus_api
from lab_http import lab_cafile, lab_tls_context
from monitoring_web import LISTENERS, metrics_on, probe_on

from playbooks import Playbooks

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
LB = RUNNER.get_hosts("lb")[0]
DB = RUNNER.get_hosts("db")[0]
CACHE = RUNNER.get_hosts("cache")[0]
METRIC_FILE = "/var/lib/node_exporter/textfile/llmops_tls.prom"
METRIC = "llmops_tls_certificate_expiry_timestamp_seconds"
UNITS: dict[str, list[str]] = {}
for _host, _unit in (
    (LB, "haproxy.service"),
    (DB, "postgresql@15-main.service"),
    (CACHE, "redis-server.service"),
):
    UNITS.setdefault(_host, []).append(_unit)
MONITORING = RUNNER.get_hosts("monitoring")[0]
MONITORING_UNITS = [
    "prometheus.service",
    "prometheus-alertmanager.service",
    "prometheus-pushgateway.service",
    "prometheus-node-exporter.service",
    "prometheus-postgres-exporter.service",
    "prometheus-redis-exporter.service",
]


def _node(host: str):
    return testinfra.get_host(
        f"ansible://{host}?ansible_inventory={RUNNER.inventory_file}", sudo=True
    )


def _address(host: str) -> str:
    return RUNNER.get_variables(host)["ansible_host"]


def _https_certificate(address: str) -> dict:
    with (
        socket.create_connection((address, 8443), timeout=10) as raw,
        lab_tls_context().wrap_socket(raw, server_hostname=address) as tls,
    ):
        return tls.getpeercert()


def _served_serial(host: str, address: str, port: int, *starttls: str) -> int:
    """Serial of the certificate a TLS port serves, read on the host itself (the firewall
    opens 5432 and 6379 to db/registry and cache/registry hosts only, not this
    controller), verified by the internal CA and the address."""
    out = _node(host).check_output(
        f"openssl s_client -connect {address}:{port} {' '.join(starttls)}"
        f" -CAfile /etc/llmops/tls/ca.crt -verify_return_error -verify_ip {address}"
        " </dev/null 2>/dev/null | openssl x509 -noout -serial"
    )
    return int(out.split("=", 1)[1], 16)


def _postgres_serial(address: str) -> int:
    """PostgreSQL's STARTTLS (SSLRequest, then the handshake)."""
    return _served_serial(DB, address, 5432, "-starttls", "postgres")


def _redis_serial(address: str) -> int:
    """Redis's TLS-only port."""
    return _served_serial(CACHE, address, 6379)


def _serial(cert: dict) -> int:
    return int(cert["serialNumber"], 16)


def _controller_pki() -> dict[str, str]:
    """sha256 of every file of the internal CA folder on the controller."""
    root = Path(lab_cafile()).parent
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _main_pids(host: str, units: list[str] | None = None) -> dict[str, str]:
    node = _node(host)
    return {
        unit: node.check_output(f"systemctl show -p MainPID --value {unit}")
        for unit in (units or UNITS[host])
    }


def _monitoring_serials() -> dict[int, int]:
    """Port -> serial of the certificate each monitoring listener of the (one) host
    serves, read on the monitoring host with its client certificate."""
    node = _node(MONITORING)
    address = _address(MONITORING)
    serials = {}
    for _name, port, _group, _cert in LISTENERS:
        answer = probe_on(node, f"https://{address}:{port}/", client_cert=True, password=None)
        assert answer["serial"], (port, answer)
        serials[port] = int(answer["serial"], 16)
    return serials


class Load(threading.Thread):
    """GET /api/v1/subjects through HAProxy, a new TLS connection each time (a
    handshake during the reload is what could fail), until stopped."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address
        self.sent = 0
        self.failed: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            conn = http.client.HTTPSConnection(
                self.address, 8443, timeout=10, context=lab_tls_context()
            )
            try:
                conn.request("GET", "/api/v1/subjects")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failed.append(f"{time.strftime('%T')} HTTP {response.status}")
            except (OSError, http.client.HTTPException, ssl.SSLError) as error:
                self.failed.append(f"{time.strftime('%T')} {error!r}")
            finally:
                conn.close()
            time.sleep(0.02)


@pytest.fixture(scope="module")
def playbooks() -> Playbooks:
    return Playbooks()


def test_check_mode_changes_nothing(playbooks):
    served = _serial(_https_certificate(_address(LB)))
    files = _controller_pki()
    proc = playbooks.run("playbooks/rotate_certs.yml", "--check")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _controller_pki() == files
    assert _serial(_https_certificate(_address(LB))) == served


def _served_after_rotation(lb: str, db: str, cache: str, before: tuple) -> tuple:
    """HAProxy's certificate, PostgreSQL's and Redis's serials once all three changed. The
    reloads are asynchronous (a signal): the new files are served within seconds."""
    deadline = time.monotonic() + 15
    while True:
        after_https, after_pg = _https_certificate(lb), _postgres_serial(db)
        after_redis = _redis_serial(cache)
        changed = tuple(
            a != b
            for a, b in zip((_serial(after_https), after_pg, after_redis), before, strict=True)
        )
        if all(changed) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert changed == (True, True, True), "https, postgresql, redis: new certificate served?"
    return after_https, after_pg, after_redis


def test_rotation_replaces_every_certificate_without_a_failed_request(playbooks, capsys):
    lb, db, cache = _address(LB), _address(DB), _address(CACHE)
    before_https = _https_certificate(lb)
    before_pg = _postgres_serial(db)
    before_redis = _redis_serial(cache)
    pids = {host: _main_pids(host) for host in UNITS}
    monitoring_pids = _main_pids(MONITORING, MONITORING_UNITS)
    before_monitoring = _monitoring_serials()
    assert set(before_monitoring.values()) == {_serial(before_https)}

    load = Load(lb)
    load.start()
    deadline = time.monotonic() + 30
    while load.sent < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    started = time.monotonic()
    proc = playbooks.run("playbooks/rotate_certs.yml")
    took = time.monotonic() - started
    time.sleep(3)  # requests after the reloads too
    load.stop.set()
    load.join(timeout=15)
    with capsys.disabled():
        print(
            f"\nrotate_certs.yml: {took:.1f} s, {load.sent} https requests, "
            f"{len(load.failed)} failed"
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert load.sent > 0
    assert load.failed == [], load.failed[:10]

    after_https, after_pg, after_redis = _served_after_rotation(
        lb, db, cache, (_serial(before_https), before_pg, before_redis)
    )
    with capsys.disabled():
        print(f"redis {cache}:6379 served serial {before_redis:X} before, {after_redis:X} after")
    if LB == DB:
        assert after_pg == _serial(after_https)
    if CACHE == LB:
        assert after_redis == _serial(after_https)
    # Reloaded, not restarted.
    assert {host: _main_pids(host) for host in UNITS} == pids

    _check_monitoring_listeners(before_monitoring, _serial(after_https), monitoring_pids, capsys)

    # The expiry metric describes the new certificate: file and node_exporter.
    not_after = int(ssl.cert_time_to_seconds(after_https["notAfter"]))
    assert not_after > time.time() + 300 * 86400
    node = _node(LB)
    served_serial = f"{_serial(after_https):X}"
    pattern = re.compile(
        METRIC
        + r'\{path="/etc/llmops/tls/server\.crt",subject="[^"]*",serial="0*'
        + served_serial
        + r'"\} (\d+)$',
        re.MULTILINE,
    )
    match = pattern.search(node.file(METRIC_FILE).content_string)
    assert match, node.file(METRIC_FILE).content_string
    assert int(match[1]) == not_after
    # node_exporter sorts the labels and writes the value as a float.
    exported = re.search(
        METRIC
        + r'\{path="/etc/llmops/tls/server\.crt",serial="0*'
        + served_serial
        + r'",subject="[^"]*"\} (\S+)$',
        metrics_on(node, _address(LB), 9100),
        re.MULTILINE,
    )
    assert exported, "node_exporter does not export the new certificate's expiry"
    assert float(exported[1]) == not_after


def _check_monitoring_listeners(before: dict[int, int], new: int, pids: dict, capsys) -> None:
    """The monitoring listeners serve the new certificate without a reload or restart,
    and Prometheus keeps scraping them (its client certificate for redis_exporter too)."""
    after = _monitoring_serials()
    with capsys.disabled():
        print(
            f"monitoring listeners' serials: before {sorted(set(before.values()))}, "
            f"after {sorted(set(after.values()))}"
        )
    assert set(after.values()) == {new}, after
    assert _main_pids(MONITORING, MONITORING_UNITS) == pids
    time.sleep(20)  # more than a scrape interval after the rotation
    targets = prometheus_api(f"https://{_address(MONITORING)}:9090", "/api/v1/targets")
    assert [t["scrapeUrl"] for t in targets["activeTargets"] if t["health"] != "up"] == []


def test_expiry_metric_writer_is_hardened_and_scheduled(capsys):
    node = _node(LB)
    assert node.service("llmops-tls-expiry-metrics.timer").is_enabled
    assert node.service("llmops-tls-expiry-metrics.timer").is_running
    unit = "llmops-tls-expiry-metrics.service"
    assert node.run(f"systemctl is-failed {unit}").stdout.strip() != "failed"
    report = node.check_output(f"systemd-analyze security --no-pager {unit}")
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", report)[1])
    with capsys.disabled():
        print(f"\nexposure {LB} {unit}: {score} (target <= 1.3)")
    assert score <= 1.3, report
