"""The monitoring stack's web listeners (role monitoring_web) as the verifiers see them:
https checked against the lab's CA, the stack's one user, and on redis_exporter a
client certificate instead (Debian's 1.45 has no basic auth).

From the controller: web_request() (Prometheus and Alertmanager are open to the admin
network). From a lab host (the exporters are open to the monitoring hosts only, and not
every lab host has curl): probe_on(), which runs Python's standard library there with
the host's own certificate as the client certificate. A scenario's tests/conftest.py
puts this folder on sys.path."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from functools import cache

import yaml
from lab_http import lab_tls_context

USER = "monitoring"  # monitoring_web_user's default
TLS_DIR = "/etc/llmops/tls"  # the pki role's files on every host
WRONG_PASSWORD = "not-the-password"  # noqa: S105 - deliberately wrong, for the refusals

# name, port, inventory group whose hosts serve it (None: every host), client cert
LISTENERS = (
    ("prometheus", 9090, "monitoring", False),
    ("alertmanager", 9093, "monitoring", False),
    ("pushgateway", 9091, "monitoring", False),
    ("node_exporter", 9100, None, False),
    ("postgres_exporter", 9187, "db", False),
    ("redis_exporter", 9121, "cache", True),
    # The registry instances' own /metrics (role schema_registry, metrics_port).
    ("registry_a", 9181, "registry", True),
    ("registry_b", 9182, "registry", True),
)
# Prometheus jobs that scrape these listeners (all over https).
WEB_JOBS = frozenset({"prometheus", "alertmanager", "pushgateway", "node", "postgres", "redis"})


@cache
def web_password() -> str:
    """The scenario's test-only vault_monitoring_web_password (molecule.yml)."""
    with open(os.environ["MOLECULE_FILE"], encoding="utf-8") as handle:
        scenario = yaml.safe_load(handle)
    return scenario["provisioner"]["inventory"]["group_vars"]["all"][
        "vault_monitoring_web_password"
    ]


def auth_header(password: str) -> dict[str, str]:
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def web_request(
    method: str, url: str, *, password: str | None = "", body: bytes | None = None
) -> tuple[int, bytes]:
    """(status, body) of one request from the controller, checked against the lab's CA;
    password "" means the scenario's, None no credentials. HTTP errors are returned."""
    password = web_password() if password == "" else password
    headers = auth_header(password) if password is not None else {}
    # Only URLs built from lab host addresses reach here.
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    context = lab_tls_context() if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def push_is_refused(address: str) -> None:
    """A push to the Pushgateway at address without the login, or with a wrong password,
    gets 401 and leaves no trace in its metrics."""
    base = f"https://{address}:9091"
    group = f"{base}/metrics/job/molecule_intruder"
    body = b"molecule_intruder_total 1\n"
    assert web_request("PUT", group, password=None, body=body)[0] == 401
    assert web_request("PUT", group, password=WRONG_PASSWORD, body=body)[0] == 401
    status, metrics = web_request("GET", f"{base}/metrics")
    assert status == 200
    assert b"molecule_intruder" not in metrics


def web_json(url: str, **params: str) -> dict:
    """GET a JSON API (Prometheus, Alertmanager) with the stack's credentials."""
    if params:
        url += "?" + urllib.parse.urlencode(params)
    status, body = web_request("GET", url)
    assert status == 200, f"{url}: HTTP {status} {body[:300]!r}"
    return json.loads(body)


# Runs on a lab host: argv = method url user password ca cert key body. Prints one JSON
# line: status (None when no HTTP answer), error, the served certificate's serial and
# the start of the body.
_PROBE = r"""
import base64, json, socket, ssl, sys, urllib.error, urllib.request, urllib.parse
method, url, user, password, ca, cert, key, body = sys.argv[1:9]
out = {"status": None, "error": None, "serial": None, "body": ""}
headers = {}
if user:
    headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
context = None
if url.startswith("https://"):
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    parts = urllib.parse.urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
                out["serial"] = tls.getpeercert()["serialNumber"]
    except (OSError, ssl.SSLError) as error:
        out["error"] = repr(error)
request = urllib.request.Request(url, data=body.encode() or None, method=method, headers=headers)
try:
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        out["status"], out["body"] = response.status, response.read().decode("utf-8", "replace")
except urllib.error.HTTPError as error:
    out["status"], out["body"] = error.code, error.read(300).decode("utf-8", "replace")
except (OSError, ssl.SSLError) as error:
    out["error"] = repr(error)
print(json.dumps(out))
"""


def probe_on(
    host,
    url: str,
    *,
    password: str | None = "",
    client_cert: bool = False,
    method: str = "GET",
    body: str = "",
) -> dict:
    """One request made on the lab host (testinfra host, run as root to read the key):
    {status, error, serial, body}. password "" means the scenario's, None none."""
    password = web_password() if password == "" else password
    user = USER if password is not None else ""
    cert = f"{TLS_DIR}/server.crt" if client_cert else ""
    key = f"{TLS_DIR}/server.key" if client_cert else ""
    with host.sudo():
        out = host.check_output(
            "python3 -c %s %s %s %s %s %s %s %s %s",
            _PROBE,
            method,
            url,
            user,
            password or "",
            f"{TLS_DIR}/ca.crt",
            cert,
            key,
            body,
        )
    return json.loads(out)


def listeners(groups: dict[str, list[str]], hosts: list[str]) -> list[tuple[str, str, int, bool]]:
    """(name, host, port, client cert) of every listener of the stack in this inventory."""
    found = []
    for name, port, group, client_cert in LISTENERS:
        for host in hosts if group is None else groups.get(group, []):
            found.append((name, host, port, client_cert))
    return found


def refusals(host, address: str, port: int, client_cert: bool) -> list[str]:
    """What is wrong with one listener, asked from `host`: it must refuse a request
    without credentials, with a wrong password and over plain http, and answer one
    with the CA and credentials (client certificate for redis_exporter)."""
    base = f"https://{address}:{port}/metrics"
    wrong: list[str] = []
    good = probe_on(host, base, client_cert=client_cert, password=None if client_cert else "")
    if good["status"] != 200:
        wrong.append(f"with CA and credentials: {good}")
    if client_cert:
        bare = probe_on(host, base, password=None)
        if bare["status"] is not None:
            wrong.append(f"without a client certificate: {bare}")
    else:
        for label, password in (("without credentials", None), ("wrong password", WRONG_PASSWORD)):
            answer = probe_on(host, base, password=password)
            if answer["status"] != 401:
                wrong.append(f"{label}: {answer}")
    # A TLS listener answers plain HTTP with 400 "Client sent an HTTP request to an
    # HTTPS server" and no metrics.
    plain = probe_on(host, f"http://{address}:{port}/metrics", password=None)
    if plain["status"] != 400 or "# TYPE" in plain["body"]:
        wrong.append(f"plain http: {plain}")
    return [f"{address}:{port} {item}" for item in wrong]


def metrics_on(host, address: str, port: int) -> str:
    """/metrics of one listener, read on the lab host as Prometheus reads it."""
    client_cert = any(p == port and cert for _n, p, _g, cert in LISTENERS)
    answer = probe_on(
        host,
        f"https://{address}:{port}/metrics",
        client_cert=client_cert,
        password=None if client_cert else "",
    )
    assert answer["status"] == 200, f"{address}:{port}: {answer}"
    return answer["body"]
