"""The /metrics listener over TLS (issue 15): https only, a client certificate from the
CA required (Prometheus shows its host's), a rotated certificate served without a
restart; and the METRICS_TLS_* settings, which come from the environment only."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge

from schema_registry import metrics_server
from schema_registry.config import ConfigError, load_config


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl(
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"),
    )
    return cert, key


def _issue(folder: Path, ca: tuple[Path, Path], name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ca, usable by servers and clients."""
    cert, key, csr = folder / f"{name}.crt", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl(
        *("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
        *("-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}"),
    )
    _openssl(
        *("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1])),
        *("-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert)),
    )
    return cert, key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pki(tmp_path):
    ca = _ca(tmp_path, "ca")
    return {
        "ca": ca,
        "server": _issue(tmp_path, ca, "server"),
        "client": _issue(tmp_path, ca, "prometheus"),
        "stranger": _issue(tmp_path, _ca(tmp_path, "other-ca"), "stranger"),
        "dir": tmp_path,
    }


@pytest.fixture
def served(pki):
    registry = CollectorRegistry()
    Gauge("llmops_metrics_tls_probe", "A value to find.", registry=registry).set(7)
    port = _free_port()
    server = metrics_server.start(
        port,
        "127.0.0.1",
        registry,
        cert=str(pki["server"][0]),
        key=str(pki["server"][1]),
        client_ca=str(pki["ca"][0]),
    )
    yield f"https://127.0.0.1:{port}/metrics", port
    server.shutdown()
    server.server_close()


def _context(pki, client: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"][0]))
    if client:
        context.load_cert_chain(str(pki[client][0]), str(pki[client][1]))
    return context


def _get(url: str, context: ssl.SSLContext | None) -> str:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:  # noqa: S310 - loopback
        return response.read().decode()


def test_a_client_certificate_from_the_ca_reads_the_metrics(pki, served):
    url, _port = served
    assert "llmops_metrics_tls_probe 7.0" in _get(url, _context(pki, "client"))


@pytest.mark.parametrize("client", [None, "stranger"], ids=["no-certificate", "other-ca"])
def test_a_client_without_a_certificate_from_the_ca_gets_nothing(pki, served, client):
    url, _port = served
    with pytest.raises((ssl.SSLError, OSError)):
        _get(url, _context(pki, client))


def test_plain_http_gets_a_400_and_no_metrics(served):
    _url, port = served
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"http://127.0.0.1:{port}/metrics", None)
    assert refused.value.code == 400
    assert b"HTTPS server" in refused.value.read()


def test_a_rotated_certificate_is_served_without_a_restart(pki, served):
    url, port = served
    new_cert, new_key = _issue(pki["dir"], pki["ca"], "server-rotated")
    pki["server"][1].write_bytes(new_key.read_bytes())
    pki["server"][0].write_bytes(new_cert.read_bytes())
    wanted = ssl.PEM_cert_to_DER_cert(new_cert.read_text())
    deadline = time.monotonic() + 10
    while True:
        context = _context(pki, "client")
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            served_cert = tls.getpeercert(binary_form=True)
        if served_cert == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert served_cert == wanted
    assert "llmops_metrics_tls_probe" in _get(url, context)


DB = {"DATABASE_URL": "postgresql://u:p@127.0.0.1:5432/d"}


def test_tls_settings_come_from_the_environment():
    env = {
        **DB,
        "METRICS_TLS_CERT_FILE": "/c.crt",
        "METRICS_TLS_KEY_FILE": "/c.key",
        "METRICS_TLS_CLIENT_CA_FILE": "/ca.crt",
    }
    config = load_config(env=env)
    assert (config.metrics_tls_cert_file, config.metrics_tls_key_file) == ("/c.crt", "/c.key")
    assert config.metrics_tls_client_ca_file == "/ca.crt"
    assert load_config(env=DB).metrics_tls_cert_file is None


def test_a_key_without_a_certificate_is_refused():
    with pytest.raises(ConfigError, match="need METRICS_TLS_CERT_FILE"):
        load_config(env={**DB, "METRICS_TLS_KEY_FILE": "/c.key"})
