"""The alert inbox (roles/alertmanager/files/alertmanager-inbox.py) as a real process."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import crypt
    except ImportError:
        crypt = None

SCRIPT = Path(__file__).resolve().parents[2] / "roles/alertmanager/files/alertmanager-inbox.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _payload(name: str, status: str = "firing") -> dict:
    return {
        "version": "4",
        "receiver": "default",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "severity": "critical", "instance": "db1:9187"},
                "annotations": {"summary": f"<b>{name}</b> summary"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": name,
            }
        ],
    }


def _request(
    url: str,
    body: bytes | None = None,
    login: tuple[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    if login:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode()
        )
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def inbox(tmp_path):
    port = _free_port()
    state = tmp_path / "alerts.json"

    def start(*extra: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--port", str(port), "--state", str(state), *extra]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return proc
            except OSError:
                time.sleep(0.05)
        proc.kill()
        pytest.fail("the inbox did not start")

    procs = []

    def run(*extra: str) -> str:
        procs.append(start(*extra))
        return f"http://127.0.0.1:{port}"

    def stop() -> None:
        while procs:
            proc = procs.pop()
            proc.terminate()
            proc.wait(5)

    run.stop = stop
    yield run
    stop()


def test_keeps_the_newest_alerts_and_shows_them_escaped(inbox):
    url = inbox("--keep", "2")
    for name in ("First", "Second", "Third"):
        status, body = _request(f"{url}/alerts", json.dumps(_payload(name)).encode())
        assert (status, json.loads(body)) == (200, {"stored": 1})
    status, body = _request(f"{url}/alerts.json")
    alerts = json.loads(body)
    assert [a["labels"]["alertname"] for a in alerts] == ["Third", "Second"]
    assert alerts[0]["receiver"] == "default" and alerts[0]["status"] == "firing"
    status, page = _request(f"{url}/")
    assert status == 200
    assert b"&lt;b&gt;Third&lt;/b&gt; summary" in page and b"<b>Third" not in page
    assert b"First" not in page


def test_alerts_survive_a_restart(inbox):
    url = inbox()
    _request(f"{url}/alerts", json.dumps(_payload("Kept", "resolved")).encode())
    inbox.stop()
    url = inbox()
    alerts = json.loads(_request(f"{url}/alerts.json")[1])
    assert [(a["labels"]["alertname"], a["status"]) for a in alerts] == [("Kept", "resolved")]


def test_bad_posts_are_refused_and_change_nothing(inbox):
    url = inbox()
    assert _request(f"{url}/alerts", b"not json")[0] == 400
    assert _request(f"{url}/alerts", b'{"alerts": "no list"}')[0] == 400
    assert _request(f"{url}/elsewhere", b"{}")[0] == 404
    assert json.loads(_request(f"{url}/alerts.json")[1]) == []


def test_only_the_allowed_addresses_may_post(inbox):
    url = inbox("--post-from", "192.0.2.1")
    status, body = _request(f"{url}/alerts", json.dumps(_payload("Forged")).encode())
    assert status == 403 and b"127.0.0.1 may not post" in body
    assert json.loads(_request(f"{url}/alerts.json")[1]) == []


def _served_certificate(port: int) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        return tls.getpeercert(binary_form=True)


@pytest.fixture
def secured(inbox, tmp_path, loopback_certificate):
    """The inbox on https with a login; returns its URL, a trusting context, the login."""
    if crypt is None:
        pytest.skip("no crypt module (Python 3.13+)")
    ca, cert, key = loopback_certificate("inbox-a")
    login = ("monitoring", "a-good-long-password")
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(
        f"{login[0]}:{crypt.crypt(login[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))}\n"
    )
    url = inbox("--tls-cert", str(cert), "--tls-key", str(key), "--htpasswd", str(htpasswd))
    context = ssl.create_default_context(cafile=str(ca))
    return url.replace("http://", "https://"), context, login, (cert, key)


def test_https_only_and_every_request_logs_in(secured):
    url, context, login, _files = secured
    with pytest.raises(OSError):  # plain http gets no answer
        _request(url.replace("https://", "http://") + "/-/healthy")
    status, _body = _request(f"{url}/alerts.json", context=context)
    assert status == 401
    assert _request(f"{url}/alerts.json", login=(login[0], "wrong"), context=context)[0] == 401
    assert _request(f"{url}/alerts", b"{}", login=("nobody", login[1]), context=context)[0] == 401
    posted = _request(f"{url}/alerts", json.dumps(_payload("Secure")).encode(), login, context)
    assert posted == (200, b'{"stored": 1}')
    status, body = _request(f"{url}/alerts.json", login=login, context=context)
    assert status == 200 and json.loads(body)[0]["labels"]["alertname"] == "Secure"


def test_a_new_certificate_is_served_without_a_restart(secured, loopback_certificate):
    url, _context, _login, (cert, key) = secured
    port = int(url.rsplit(":", 1)[1])
    before = _served_certificate(port)
    _new_ca, new_cert, new_key = loopback_certificate("inbox-b")
    key.write_bytes(new_key.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    deadline = time.monotonic() + 10
    while _served_certificate(port) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _served_certificate(port) == ssl.PEM_cert_to_DER_cert(new_cert.read_text())
