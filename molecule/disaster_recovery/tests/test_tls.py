"""TLS on the hops that carry registry data and credentials, checked by a scanner nobody
here wrote (testssl.sh, Debian package `testssl.sh`) and by real clients: HAProxy's
https front end on app1:8443 and PostgreSQL on db1:5432 (STARTTLS) offer nothing below
TLS 1.2 and no weak cipher, and their certificate chain is valid (internal CA) for the
host's name; plain HTTP only redirects; the stats page wants its password; PostgreSQL
refuses network clients without TLS and the registry's clients verify its name."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from lab_http import lab_cafile, lab_tls_context
from monitoring_web import metrics_on

testinfra_hosts = ["app1"]

CA_ON_HOSTS = "/etc/llmops/tls/ca.crt"
REGISTRY_PYTHON = "/opt/schema-registry/current/venv/bin/python"
# Findings that may be offered at all (anything else must be "not offered").
WEAK_PROTOCOLS = ["SSLv2", "SSLv3", "TLS1", "TLS1_1"]
WEAK_CIPHERS = [
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
    "cipherlist_AVERAGE",  # testssl's "obsolete CBC ciphers"
]
# An internal CA publishes no CRL or OCSP responder: the one finding allowed above LOW.
ALLOWED_FINDINGS = {"cert_revocation"}
TESTSSL_SECONDS = 600


@pytest.fixture(scope="module")
def scans(addresses) -> dict[str, dict[str, dict]]:
    """testssl.sh against both servers at once, by host name (checked against the
    certificate) at the host's address: {target: {finding id: finding}}."""
    testssl = shutil.which("testssl") or shutil.which("testssl.sh")
    assert testssl, "testssl.sh is not installed on the controller (Makefile APT_PACKAGES)"
    targets = {
        "haproxy": ("app1", 8443, []),
        "postgresql": ("db1", 5432, ["--starttls", "postgres"]),
    }
    with tempfile.TemporaryDirectory() as work:
        procs = {}
        for target, (name, port, extra) in targets.items():
            out = Path(work) / f"{target}.json"
            procs[target] = (
                out,
                subprocess.Popen(  # noqa: S603 - the scanner against a lab host only
                    [
                        testssl,
                        "--quiet",
                        "--color",
                        "0",
                        "--warnings",
                        "off",
                        "--add-ca",
                        lab_cafile(),
                        "--ip",
                        addresses[name],
                        "--protocols",
                        "--std",
                        "--server-defaults",
                        "--jsonfile",
                        str(out),
                        *extra,
                        f"{name}:{port}",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                ),
            )
        found = {}
        for target, (out, proc) in procs.items():
            text, _unused = proc.communicate(timeout=TESTSSL_SECONDS)
            print(f"--- testssl {target}\n{text}")  # in the verifier's log
            assert out.is_file(), f"testssl wrote no report for {target}: {text[-2000:]}"
            found[target] = {item["id"]: item for item in json.loads(out.read_text())}
    return found


@pytest.mark.parametrize("target", ["haproxy", "postgresql"])
def test_no_protocol_below_tls_1_2(scans, target):
    found = scans[target]
    for protocol in WEAK_PROTOCOLS:
        assert found[protocol]["finding"].startswith("not offered"), found[protocol]
    assert found["TLS1_2"]["finding"].startswith("offered") or found["TLS1_3"][
        "finding"
    ].startswith("offered")


@pytest.mark.parametrize("target", ["haproxy", "postgresql"])
def test_no_weak_cipher(scans, target):
    found = scans[target]
    for cipher_list in WEAK_CIPHERS:
        assert found[cipher_list]["finding"].startswith("not offered"), found[cipher_list]
    assert found["cipherlist_STRONG"]["finding"].startswith("offered")


@pytest.mark.parametrize("target", ["haproxy", "postgresql"])
def test_certificate_chain_is_valid_for_the_host_name(scans, target):
    found = scans[target]
    assert found["cert_chain_of_trust"]["finding"].startswith("passed"), found[
        "cert_chain_of_trust"
    ]
    assert found["cert_trust"]["finding"].startswith("Ok via SAN"), found["cert_trust"]


@pytest.mark.parametrize("target", ["haproxy", "postgresql"])
def test_no_finding_above_low(scans, target):
    bad = [
        f"{item['id']}: {item['severity']} {item['finding']}"
        for item in scans[target].values()
        if item["severity"] in ("MEDIUM", "HIGH", "CRITICAL") and item["id"] not in ALLOWED_FINDINGS
    ]
    assert bad == []


def _request(address: str, port: int, path: str, *, tls: bool, auth: str | None = None):
    if tls:
        conn = http.client.HTTPSConnection(address, port, timeout=10, context=lab_tls_context())
    else:
        conn = http.client.HTTPConnection(address, port, timeout=10)
    headers = {"Authorization": f"Basic {auth}"} if auth else {}
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_plain_http_is_redirected_to_https_with_308(addresses):
    address = addresses["app1"]
    status, headers, _unused = _request(address, 8080, "/api/v1/subjects?x=1", tls=False)
    assert status == 308
    assert headers["location"] == f"https://{address}:8443/api/v1/subjects?x=1"


def test_keepalived_health_path_stays_on_plain_http(addresses):
    status, _headers, _unused = _request(addresses["app1"], 8080, "/lb-health", tls=False)
    assert status == 200


def test_https_answers_carry_hsts(addresses):
    status, headers, _unused = _request(addresses["app1"], 8443, "/api/v1/subjects", tls=True)
    assert status == 200
    max_age = headers["strict-transport-security"].split("max-age=")[1].split(";")[0]
    assert int(max_age) >= 31536000


def test_stats_listener_is_https_and_each_path_wants_its_own_login(addresses, group_vars):
    """The stats page wants the stats password, /metrics the monitoring login (neither
    opens the other), and nothing is answered over plain http."""
    import base64  # noqa: PLC0415 - only here

    def basic(user: str, password: str) -> str:
        return base64.b64encode(f"{user}:{password}".encode()).decode()

    address = addresses["app1"]
    stats = basic("admin", group_vars["vault_haproxy_stats_password"])
    metrics = basic("monitoring", group_vars["vault_monitoring_web_password"])
    status, headers, _unused = _request(address, 8404, "/", tls=True)
    assert status == 401
    assert "basic" in headers.get("www-authenticate", "").lower()
    assert _request(address, 8404, "/", tls=True, auth=basic("admin", "not-it"))[0] == 401
    assert _request(address, 8404, "/", tls=True, auth=stats)[0] == 200
    assert _request(address, 8404, "/metrics", tls=True)[0] == 401
    assert _request(address, 8404, "/metrics", tls=True, auth=stats)[0] == 401
    status, _headers, body = _request(address, 8404, "/metrics", tls=True, auth=metrics)
    assert status == 200
    assert b"haproxy_backend_active_servers" in body
    with pytest.raises((OSError, http.client.HTTPException)):
        _request(address, 8404, "/metrics", tls=False, auth=metrics)


CONNECT = r"""
import sys, psycopg
try:
    psycopg.connect(sys.argv[1], connect_timeout=5).close()
    print("connected")
except psycopg.OperationalError as error:
    print("refused:", error)
"""


def _connect_from_registry_host(host, group_vars, conninfo: str) -> str:
    password = group_vars["vault_registry_db_password"]
    return host.check_output(
        "PGPASSWORD=%s %s -c %s %s", password, REGISTRY_PYTHON, CONNECT, conninfo
    )


def test_postgresql_refuses_the_registry_without_tls(host, addresses, group_vars):
    out = _connect_from_registry_host(
        host,
        group_vars,
        f"host={addresses['db1']} dbname=schema_registry user=schema_registry sslmode=disable",
    )
    assert out.startswith("refused:"), out
    assert "no encryption" in out


def test_postgresql_takes_the_registry_over_verified_tls(host, addresses, group_vars):
    base = f"dbname=schema_registry user=schema_registry sslrootcert={CA_ON_HOSTS}"
    out = _connect_from_registry_host(
        host, group_vars, f"host={addresses['db1']} {base} sslmode=verify-full"
    )
    assert out == "connected"
    # The name is checked: the same server under a name its certificate lacks is refused.
    out = _connect_from_registry_host(
        host,
        group_vars,
        f"host=not-db1.invalid hostaddr={addresses['db1']} {base} sslmode=verify-full",
    )
    assert out.startswith("refused:"), out
    assert "does not match host name" in out


def test_registry_and_exporter_use_verify_full(host, lab_host, addresses):
    config = host.check_output("sudo cat /etc/schema-registry/config.yml")
    assert f"sslmode=verify-full&sslrootcert={CA_ON_HOSTS}" in config
    db1 = lab_host("db1")
    exporter = db1.check_output("sudo cat /etc/default/prometheus-postgres-exporter")
    assert f"sslmode=verify-full&sslrootcert={CA_ON_HOSTS}" in exporter
    # Its own listener is https with the monitoring stack's login (role monitoring_web).
    metrics = metrics_on(db1, addresses["db1"], 9187)
    assert "\npg_up 1" in metrics
