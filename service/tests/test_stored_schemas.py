"""Every stored schema can be checked and validated: no 5xx, and the connection stays."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest
from helpers import auth

from schema_registry.app import KeepAlive

PRIMITIVES = ["int", "long", "string", "bytes", "boolean", "double", "float", "null"]
SAMPLE = {
    "int": 3,
    "long": 3,
    "string": "x",
    "bytes": "x",
    "boolean": True,
    "double": 1.5,
    "float": 1.5,
    "null": None,
}


def _register(client: httpx.Client, subj: str, schema, schema_type: str) -> httpx.Response:
    body = {"subject": subj, "schema": schema, "schema_type": schema_type}
    return client.post("/api/v1/schemas", json=body, headers=auth())


@pytest.mark.parametrize("primitive", PRIMITIVES)
def test_primitive_avro_schema_checks_and_validates(client, primitive):
    subj = f"llm.prim{uuid.uuid4().hex[:8]}.{primitive}"
    first = _register(client, subj, f'"{primitive}"', "avro")
    assert first.status_code == 201, first.text
    schema_id = first.json()["id"]
    for _ in range(2):  # second round: from the cache
        check = client.post(
            "/api/v1/compatibility/check",
            json={"schema_id": schema_id, "compared_schema_id": schema_id, "mode": "FULL"},
            headers=auth(),
        )
        assert check.status_code == 200, check.text
        assert check.json()["is_compatible"] is True
        valid = client.post(
            f"/api/v1/validate/{schema_id}", content=orjson.dumps(SAMPLE[primitive])
        )
        assert valid.status_code == 200, valid.text
        # JSON has no bytes: a string is not Avro bytes data (strict validation).
        assert valid.json()["is_valid"] is (primitive != "bytes")


def test_primitive_avro_promotion_through_the_api(client):
    subj = f"llm.prim{uuid.uuid4().hex[:8]}.promo"
    first = _register(client, subj, '"int"', "avro").json()["id"]
    second = _register(client, subj, '"long"', "avro")
    assert second.status_code == 201, second.text
    check = client.post(
        "/api/v1/compatibility/check",
        json={"schema_id": second.json()["id"], "compared_schema_id": first, "mode": "FORWARD"},
        headers=auth(),
    )
    assert check.status_code == 200
    assert check.json()["is_compatible"] is False
    assert check.json()["violations"][0]["rule"] == "TYPE_MISMATCH"


def test_an_error_keeps_the_keep_alive_connection(server):
    """Errors (4xx here) answer on the same connection, and the next request works."""
    seen: set = set()
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(3):
            bad = http.post("/api/v1/validate/not-a-uuid", json={})
            assert bad.status_code == 400
            ok = http.get("/livez")
            assert ok.status_code == 200
            stream = ok.extensions.get("network_stream")
            seen.add(id(stream.get_extra_info("socket")) if stream else None)
    assert len(seen) == 1


def test_an_unhandled_error_is_a_500_that_keeps_the_connection():
    """Starlette re-raises after its 500; KeepAlive stops it (else the server closes)."""

    async def broken(scope, receive, send):
        raise RuntimeError("boom")

    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(KeepAlive(broken)({"type": "http", "request_id": "r1"}, receive, send))
    assert sent[0]["status"] == 500
    assert orjson.loads(sent[1]["body"])["error_code"] == "INTERNAL_ERROR"
