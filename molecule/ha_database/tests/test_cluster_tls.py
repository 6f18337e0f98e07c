"""TLS on the Patroni cluster's own hops (issue 15): Patroni's REST API (8008) and etcd's
client (2379) and peer (2380) ports speak HTTPS only with the host certificate of role
pki; etcd admits only clients and peers that show a certificate from the CA, and the
REST API asks one for every request that changes something. Then a certificate
rotation (playbooks/rotate_certs.yml) reaches both without a restart."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from lab_http import lab_tls_context  # molecule/shared, on the path by conftest.py

testinfra_hosts = ["db1", "db2", "db3"]

GROWN = str(Path(__file__).resolve().parents[1] / "inventory" / "grown.yml")
MEMBERS = ["db1", "db2", "db3"]
TLS = "/etc/llmops/tls"
CA = f"--cacert {TLS}/ca.crt"
CERT = f"--cert {TLS}/server.crt --key {TLS}/server.key"
ETCDCTL = f"etcdctl --cacert {TLS}/ca.crt --cert {TLS}/server.crt --key {TLS}/server.key"


def curl(host, url: str, *options: str):
    """curl on a db host (as root: the key is root:ssl-cert 0640); stdout is the HTTP
    status, 000 when no HTTP answer came. HTTP/1.1 as the etcd members speak it: etcd's
    peer port hands HTTP/2 connections to its gRPC server, which resets a plain GET."""
    return host.run(
        f"curl -sS --http1.1 --max-time 10 -o /dev/null -w '%{{http_code}}'"
        f" {' '.join(options)} {url}"
    )


def api(address: str, path: str, method: str = "GET", body: dict | None = None) -> tuple:
    """(status, JSON body) of a REST API request from the controller, with the CA and no
    client certificate."""
    request = urllib.request.Request(
        f"https://{address}:8008{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10, context=lab_tls_context()) as response:  # noqa: S310 - a lab host only
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def test_the_rest_api_refuses_plain_http(addresses, host):
    address = addresses[host.backend.get_hostname()]
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://{address}:8008/health", timeout=10)


def test_the_rest_api_answers_https_checked_against_the_ca(addresses, host):
    address = addresses[host.backend.get_hostname()]
    assert api(address, "/health")[0] == 200
    # Not trusted without the CA: the certificate is not from a public CA.
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"https://{address}:8008/health", timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)


def test_a_change_needs_a_client_certificate_from_the_ca(addresses, host):
    address = addresses[host.backend.get_hostname()]
    # A PATCH /config that sets loop_wait to what it is changes nothing (harmless if the
    # refusal ever fails).
    status, config = api(address, "/config")
    assert status == 200
    same = json.dumps({"loop_wait": config["loop_wait"]})
    assert api(address, "/config", "PATCH", json.loads(same))[0] == 403
    patch = f"-X PATCH -H 'Content-Type: application/json' --data '{same}'"
    assert curl(host, f"https://{address}:8008/config", CA, CERT, patch).stdout == "200"


def test_patronictl_talks_https_with_the_certificate(host):
    assert sorted(m["Member"] for m in _patronictl_list(host)) == MEMBERS


@pytest.mark.parametrize("port", [2379, 2380])
def test_etcd_admits_only_a_certificate_from_the_ca(addresses, host, port):
    address = addresses[host.backend.get_hostname()]
    url = f"https://{address}:{port}/version"
    assert curl(host, url, CA, CERT).stdout == "200"
    # No certificate, or one from another CA: no HTTP answer at all.
    assert curl(host, url, CA).stdout == "000"
    other = "/tmp/not-our-ca"  # noqa: S108 - a throwaway key on a throwaway lab host
    host.check_output(
        f"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
        f" -subj /CN=intruder -addext subjectAltName=IP:{address}"
        f" -keyout {other}.key -out {other}.crt 2>/dev/null"
    )
    assert curl(host, url, CA, f"--cert {other}.crt --key {other}.key").stdout == "000"
    # Plain HTTP: no answer (or at most Go's "400 Client sent an HTTP request to an HTTPS
    # server"), never the version.
    assert curl(host, f"http://{address}:{port}/version").stdout in ("000", "400")


def test_every_member_is_healthy_with_https_peer_and_client_urls(addresses, host):
    address = addresses[host.backend.get_hostname()]
    health = host.run(f"{ETCDCTL} --endpoints https://{address}:2379 endpoint health")
    assert health.rc == 0 and "is healthy" in health.stdout + health.stderr, health.stderr
    members = json.loads(
        host.check_output(f"{ETCDCTL} --endpoints https://{address}:2379 member list -w json")
    )["members"]
    assert sorted(m["name"] for m in members) == MEMBERS
    for member in members:
        assert all(u.startswith("https://") for u in member["peerURLs"] + member["clientURLs"])
    settings = host.file("/etc/default/etcd").content_string
    assert "http://" not in settings
    assert 'ETCD_CLIENT_CERT_AUTH="true"' in settings
    assert 'ETCD_PEER_CLIENT_CERT_AUTH="true"' in settings


# Port -> extra s_client options: the REST API, etcd's client and peer ports, and
# PostgreSQL (STARTTLS; Patroni reloads it on its own SIGHUP).
PORTS = {8008: "", 2379: "", 2380: "", 5432: "-starttls postgres"}


def _serial(host, address: str, port: int) -> int:
    """Serial of the certificate a port serves, read on the host with its certificate
    (sudo: the key is root:ssl-cert 0640), checked against the CA and the address."""
    out = host.check_output(
        f"sudo openssl s_client -connect {address}:{port} {PORTS[port]} -CAfile {TLS}/ca.crt"
        f" -verify_return_error -verify_ip {address} -cert {TLS}/server.crt"
        f" -key {TLS}/server.key </dev/null 2>/dev/null | openssl x509 -noout -serial"
    )
    return int(out.split("=", 1)[1], 16)


def _served(lab_host, addresses) -> dict[tuple[str, int], int]:
    return {
        (name, port): _serial(lab_host(name), addresses[name], port)
        for name in MEMBERS
        for port in PORTS
    }


def _pids(lab_host) -> dict[tuple[str, str], str]:
    return {
        (name, unit): lab_host(name).check_output(f"systemctl show -p MainPID --value {unit}")
        for name in MEMBERS
        for unit in ("patroni.service", "etcd.service")
    }


def _patronictl_list(host) -> list[dict]:
    return json.loads(host.check_output("sudo patronictl -c /etc/patroni/config.yml list -f json"))


def test_rotation_gives_patroni_and_etcd_the_new_certificate_without_a_restart(
    lab_host, addresses, playbooks
):
    before, pids = _served(lab_host, addresses), _pids(lab_host)
    run = playbooks.run("-i", GROWN, "playbooks/rotate_certs.yml", "--limit", "db")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    files = {
        name: int(
            lab_host(name).check_output(f"openssl x509 -in {TLS}/server.crt -noout -serial")[7:],
            16,
        )
        for name in MEMBERS
    }
    # Patroni reloads on SIGHUP (asynchronous); etcd reads the files per new connection.
    deadline = time.monotonic() + 30
    while True:
        after = _served(lab_host, addresses)
        if all(after[k] == files[k[0]] for k in after) or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert {k: after[k] == files[k[0]] for k in after} == dict.fromkeys(after, True)
    assert all(after[k] != before[k] for k in after)
    assert _pids(lab_host) == pids
    # The cluster still works on the new certificates: members, leader, etcd quorum.
    db = lab_host("db1")
    listed = _patronictl_list(db)
    assert sorted(m["Member"] for m in listed) == MEMBERS
    assert [m["Role"] for m in listed].count("Leader") == 1
    assert all(m["State"] in ("running", "streaming") for m in listed), listed
    endpoints = ",".join(f"https://{addresses[n]}:2379" for n in MEMBERS)
    health = db.run(f"sudo {ETCDCTL} --endpoints {endpoints} endpoint health")
    assert health.rc == 0, health.stdout + health.stderr
