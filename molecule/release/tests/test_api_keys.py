"""API key scopes and rate limits through the real HAProxy (issue 15).

Runs on the controller against the lb hosts' front ends, as clients do. The scope
matrix: read cannot write, write cannot delete permanently, admin can, an unknown key
is a 401. Then one key sends requests as fast as it can through lb2 until HAProxy
answers 429 with Retry-After; another key from the same address still gets through.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid

import pytest
from lab_http import lab_tls_context

KEYS = {
    "write": "molecule-rel-api-key-0123456789abcdef",
    "admin": "molecule-rel-admin-key-0123456789abcdef",
    "read": "molecule-rel-reader-key-0123456789abcdef",
    "limits": "molecule-rel-limits-key-0123456789abcdef",
}
SCHEMA = {"type": "object", "properties": {"prompt": {"type": "string"}}}


def front_end(address: str) -> http.client.HTTPSConnection:
    """A connection to HAProxy's https front end, checked against the lab's CA."""
    return http.client.HTTPSConnection(address, 8443, timeout=10, context=lab_tls_context())


def call(address: str, method: str, path: str, key: str | None = None, body=None):
    """(status, headers, decoded body) of one request to the HAProxy front end."""
    conn = front_end(address)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, body=json.dumps(body) if body else None, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        return response.status, dict(response.getheaders()), json.loads(payload or b"null")
    finally:
        conn.close()


def register(address: str, key: str) -> tuple[int, dict]:
    body = {
        "subject": f"verify.keys.s{uuid.uuid4().hex[:12]}",
        "schema_type": "JSON",
        "schema": SCHEMA,
    }
    status, _headers, payload = call(address, "POST", "/api/v1/schemas", KEYS[key], body)
    return status, payload


@pytest.fixture(scope="module")
def lb1(addresses) -> str:
    return addresses["lb1"]


def insufficient(status: int, payload: dict, needed: str) -> None:
    assert status == 403, payload
    assert payload["error_code"] == "INSUFFICIENT_SCOPE"
    assert payload["details"]["required_scope"] == needed


def test_read_key_cannot_write(lb1):
    status, payload = register(lb1, "read")
    insufficient(status, payload, "write")
    status, created = register(lb1, "write")
    assert status == 201, created
    status, _h, fetched = call(lb1, "GET", f"/api/v1/schemas/{created['id']}", KEYS["read"])
    assert (status, fetched["id"]) == (200, created["id"])


def test_write_key_cannot_delete_permanently_admin_can(lb1):
    status, created = register(lb1, "write")
    assert status == 201, created
    path = f"/api/v1/schemas/{created['id']}?permanent=true"
    status, _h, payload = call(lb1, "DELETE", path, KEYS["write"])
    insufficient(status, payload, "admin")
    assert call(lb1, "GET", f"/api/v1/schemas/{created['id']}")[0] == 200
    status, _h, payload = call(lb1, "DELETE", path, KEYS["admin"])
    assert (status, payload["permanent"]) == (200, True), payload
    gone = call(lb1, "GET", f"/api/v1/schemas/{created['id']}?include_deleted=true")
    assert gone[0] == 404


def test_unknown_or_rotated_out_key_is_refused(lb1):
    status, _h, payload = call(
        lb1, "POST", "/api/v1/schemas", "rotated-out-" + uuid.uuid4().hex, {"subject": "x"}
    )
    assert (status, payload["error_code"]) == (401, "INVALID_API_KEY")


def test_per_key_limit_answers_429_with_retry_after(addresses, lab_host, capsys):
    lb2 = addresses["lb2"]
    limit = lab_host("lb2").ansible.get_variables()["loadbalancer_rate_limit_per_key"]
    answered: list[int] = []
    limited: list[tuple[str | None, dict]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def hammer() -> None:
        conn = front_end(lb2)
        headers = {"Authorization": f"Bearer {KEYS['limits']}"}
        while time.monotonic() < deadline and not limited:
            conn.request("GET", "/livez", headers=headers)
            response = conn.getresponse()
            payload = response.read()
            with lock:
                if response.status == 429:
                    limited.append((response.getheader("Retry-After"), json.loads(payload)))
                else:
                    answered.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = front_end(lb2)
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=hammer) for _thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    assert limited, f"no 429 after {len(answered)} requests in {seconds:.1f} s (limit {limit})"
    retry_after, payload = limited[0]
    assert retry_after == "10", retry_after
    assert payload["error_code"] == "RATE_LIMITED"
    assert payload["details"]["limit_per"] == "api_key"
    # The key's limit, not the address's: `limit` requests got through first (more only
    # when the burst outlasts the period and the sliding rate lets some through).
    assert set(answered) == {200}
    assert limit <= len(answered) <= 2 * limit, (len(answered), limit)
    # Another key from the same address is not limited.
    assert call(lb2, "GET", "/livez", KEYS["read"])[0] == 200
    with capsys.disabled():
        print(f"\n429 after {len(answered)} requests in {seconds:.1f} s (limit {limit} per 10 s)")


def test_monitor_uri_is_not_limited(addresses):
    # keepalived's health check, on the plain-HTTP front end (no rate limit there).
    conn = http.client.HTTPConnection(addresses["lb2"], 8080, timeout=10)
    try:
        for _request in range(50):
            conn.request("GET", "/lb-health", headers={"Authorization": f"Bearer {KEYS['limits']}"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
    finally:
        conn.close()
