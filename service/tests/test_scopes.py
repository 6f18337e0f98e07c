"""API key scopes read < write < admin against the real server, key rotation, bad scopes.

The session server (conftest) has one key per scope: SCOPE_KEYS read and write, and
API_KEY with admin. A refused request must change nothing.
"""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from helpers import API_KEY, REDIS_URL, SCOPE_KEYS, Server, auth, cli, write_config

READ, WRITE, ADMIN = SCOPE_KEYS["read"], SCOPE_KEYS["write"], API_KEY
SCHEMA = {"type": "object", "properties": {"prompt": {"type": "string"}}}


def _register(client: httpx.Client, key: str, subject: str) -> httpx.Response:
    body = {"subject": subject, "schema_type": "JSON", "schema": SCHEMA}
    return client.post("/api/v1/schemas", json=body, headers=auth(key))


def _subject() -> str:
    return f"scopes.s{uuid.uuid4().hex[:12]}"


def _insufficient(response: httpx.Response, needed: str) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error_code"] == "INSUFFICIENT_SCOPE"
    assert body["details"]["required_scope"] == needed
    assert set(body) == {"error_code", "message", "details", "request_id"}


def test_read_key_reads_but_cannot_write(client):
    schema_id = _register(client, WRITE, _subject()).json()["id"]
    assert client.get(f"/api/v1/schemas/{schema_id}", headers=auth(READ)).status_code == 200
    validated = client.post(
        f"/api/v1/validate/{schema_id}", json={"prompt": "x"}, headers=auth(READ)
    )
    assert validated.status_code == 200

    subject = _subject()
    _insufficient(_register(client, READ, subject), "write")
    assert client.get(f"/api/v1/subjects/{subject}/versions").status_code == 404
    check = {"schema_id": schema_id, "compared_schema_id": schema_id}
    _insufficient(
        client.post("/api/v1/compatibility/check", json=check, headers=auth(READ)), "write"
    )
    _insufficient(client.delete(f"/api/v1/schemas/{schema_id}", headers=auth(READ)), "write")
    assert client.get(f"/api/v1/schemas/{schema_id}").json()["state"] != "DELETED"


def test_write_key_writes_and_soft_deletes_but_cannot_delete_permanently(client):
    subject = _subject()
    created = _register(client, WRITE, subject)
    assert created.status_code == 201, created.text
    schema_id = created.json()["id"]
    check = {"schema_id": schema_id, "compared_schema_id": schema_id}
    checked = client.post("/api/v1/compatibility/check", json=check, headers=auth(WRITE))
    assert checked.status_code == 200, checked.text

    refused = client.delete(
        f"/api/v1/schemas/{schema_id}", params={"permanent": "true"}, headers=auth(WRITE)
    )
    _insufficient(refused, "admin")
    assert client.get(f"/api/v1/schemas/{schema_id}").status_code == 200

    soft = client.delete(f"/api/v1/schemas/{schema_id}", headers=auth(WRITE))
    assert soft.json() == {"id": schema_id, "deleted": True, "permanent": False}
    kept = client.get(f"/api/v1/schemas/{schema_id}", params={"include_deleted": "true"})
    assert kept.status_code == 200


def test_admin_key_deletes_permanently(client):
    schema_id = _register(client, ADMIN, _subject()).json()["id"]
    gone = client.delete(
        f"/api/v1/schemas/{schema_id}", params={"permanent": "true"}, headers=auth(ADMIN)
    )
    assert gone.json() == {"id": schema_id, "deleted": True, "permanent": True}
    after = client.get(f"/api/v1/schemas/{schema_id}", params={"include_deleted": "true"})
    assert after.status_code == 404


def test_unknown_key_stays_401(client):
    refused = _register(client, "never-configured-" + uuid.uuid4().hex, _subject())
    assert refused.status_code == 401
    assert refused.json()["error_code"] == "INVALID_API_KEY"


def _keys(**keys: str) -> dict:
    return {
        "api_keys": [
            {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest()}
            for name, key in keys.items()
        ]
    }


def test_rotation_keeps_both_keys_then_refuses_the_rotated_out_one(migrated_db, tmp_path):
    old, new = "old-" + uuid.uuid4().hex, "new-" + uuid.uuid4().hex
    (tmp_path / "both").mkdir()
    server = Server(
        write_config(tmp_path / "both", migrated_db, REDIS_URL, auth=_keys(old=old, new=new))
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for key in (old, new):
                assert _register(client, key, _subject()).status_code == 201
    finally:
        server.stop()

    (tmp_path / "new").mkdir()
    server = Server(write_config(tmp_path / "new", migrated_db, REDIS_URL, auth=_keys(new=new)))
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            subject = _subject()
            refused = _register(client, old, subject)
            assert refused.status_code == 401
            assert refused.json()["error_code"] == "INVALID_API_KEY"
            assert client.get(f"/api/v1/subjects/{subject}/versions").status_code == 404
            assert _register(client, new, _subject()).status_code == 201
    finally:
        server.stop()


@pytest.mark.parametrize("scopes", [["read", "superuser"], [], "admin"])
def test_unknown_scope_is_refused_at_start(migrated_db, tmp_path, scopes):
    keys = {"api_keys": [{"name": "k", "sha256": "0" * 64, "scopes": scopes}]}
    config = write_config(tmp_path, migrated_db, None, auth=keys)
    result = cli("serve", config=config)
    assert result.returncode == 2
    assert "invalid configuration: auth.api_keys[0].scopes" in result.stderr, result.stderr


def test_default_scopes_are_read_and_write(migrated_db, tmp_path):
    config = write_config(tmp_path, migrated_db, None, auth=_keys(plain="k" * 20))
    shown = cli("check-config", config=config)
    assert shown.returncode == 0, shown.stderr
    assert '"api_key_scopes": {"plain": ["read", "write"]}' in shown.stdout
