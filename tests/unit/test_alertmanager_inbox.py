"""The alert inbox (roles/alertmanager/files/alertmanager-inbox.py) as a real process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

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


def _request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
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
                if _request(f"http://127.0.0.1:{port}/-/healthy")[0] == 200:
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
