"""The HTTP API against the real server, PostgreSQL and Redis."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis
from helpers import REDIS_URL, Server, auth

CHAT = {
    "type": "object",
    "properties": {"prompt": {"type": "string", "maxLength": 4000}},
    "required": ["prompt"],
}


def subject() -> str:
    return f"llm.test{uuid.uuid4().hex[:8]}.chat"


def register(client: httpx.Client, subj: str, schema, schema_type="json", **extra):
    body = {"subject": subj, "schema": schema, "schema_type": schema_type, **extra}
    return client.post("/api/v1/schemas", json=body, headers=auth())


def test_register_returns_201_with_id_and_first_version(client):
    response = register(client, subject(), CHAT)
    assert response.status_code == 201
    body = response.json()
    assert body["version"] == "1.0.0"
    assert uuid.UUID(body["id"])
    assert body["created"] is True


def test_identical_content_again_is_idempotent_200_same_id(client):
    subj = subject()
    first = register(client, subj, CHAT).json()
    again = register(client, subj, CHAT)
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.json()["created"] is False


def test_same_version_with_different_content_is_409(client):
    subj = subject()
    assert register(client, subj, CHAT, version_major=2).status_code == 201
    other = {**CHAT, "description": "changed"}
    conflict = register(client, subj, other, version_major=2)
    assert conflict.status_code == 409
    assert conflict.json()["error_code"] == "VERSION_CONFLICT"


def test_same_content_under_another_subject_is_a_new_schema(client):
    first = register(client, subject(), CHAT)
    second = register(client, subject(), CHAT)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


def test_incompatible_new_version_is_409_with_violations(client):
    subj = subject()
    register(client, subj, CHAT)
    breaking = {
        **CHAT,
        "required": ["prompt", "model"],
        "properties": {**CHAT["properties"], "model": {"type": "string"}},
    }
    response = register(client, subj, breaking)
    assert response.status_code == 409
    error = response.json()
    assert error["error_code"] == "INCOMPATIBLE_SCHEMA"
    assert error["details"]["violations"][0]["rule"] == "REQUIRED_ADDED"
    assert error["details"]["violations"][0]["path"] == "/properties/model"
    assert error["request_id"]
    versions = client.get(f"/api/v1/subjects/{subj}/versions").json()["versions"]
    assert versions == ["1.0.0"]


def test_compatible_new_version_gets_next_minor(client):
    subj = subject()
    register(client, subj, CHAT)
    # A longer prompt allowed: old data still valid. (A typed property added to this
    # open object would not be: old data may hold it with any value.)
    wider = {**CHAT, "properties": {"prompt": {"type": "string", "maxLength": 8000}}}
    response = register(client, subj, wider)
    assert response.status_code == 201
    assert response.json()["version"] == "1.1.0"


def test_invalid_schema_is_422_with_parser_reason(client):
    response = register(client, subject(), {"type": "no-such-type"})
    assert response.status_code == 422
    assert response.json()["error_code"] == "INVALID_SCHEMA"
    assert "type" in response.json()["message"]
    avro = register(client, subject(), {"type": "record", "name": "R"}, "avro")
    assert avro.status_code == 422
    proto = register(client, subject(), "syntax = 'proto3'; message M { int32 a = ; }", "protobuf")
    assert proto.status_code == 422
    assert "line 1" in proto.json()["message"]


def test_get_by_id_returns_document_and_fills_redis(client):
    subj = subject()
    schema_id = register(client, subj, CHAT).json()["id"]
    cache = redis.Redis.from_url(REDIS_URL)
    cache.delete(f"schema:{schema_id}")
    response = client.get(f"/api/v1/schemas/{schema_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["schema"] == CHAT
    assert (body["namespace"], body["name"], body["state"]) == (
        subj.rsplit(".", 1)[0],
        "chat",
        "ACTIVE",
    )
    assert cache.ttl(f"schema:{schema_id}") > 3500


def test_subject_without_dot_has_namespace_default(client):
    name = "plain" + uuid.uuid4().hex[:6]
    schema_id = register(client, name, CHAT).json()["id"]
    assert client.get(f"/api/v1/schemas/{schema_id}").json()["namespace"] == "default"


def test_unknown_and_malformed_ids(client):
    assert client.get(f"/api/v1/schemas/{uuid.uuid4()}").status_code == 404
    bad = client.get("/api/v1/schemas/not-a-uuid")
    assert bad.status_code == 400
    assert set(bad.json()) == {"error_code", "message", "details", "request_id"}


def test_validate_json_data(client):
    schema_id = register(client, subject(), CHAT).json()["id"]
    good = client.post(f"/api/v1/validate/{schema_id}", json={"prompt": "hi"}).json()
    assert good == {"is_valid": True, "errors": []}
    bad = client.post(f"/api/v1/validate/{schema_id}", json={"prompt": 3}).json()
    assert bad["is_valid"] is False
    assert "/prompt" in bad["errors"][0]
    # Validated data is never stored: a NUL character in it is ordinary JSON text.
    nul = client.post(f"/api/v1/validate/{schema_id}", json={"prompt": "a\x00b"})
    assert nul.status_code == 200, nul.text
    assert nul.json() == {"is_valid": True, "errors": []}


def test_validate_avro_data(client):
    schema = {
        "type": "record",
        "name": "Usage",
        "fields": [{"name": "tokens", "type": "int"}, {"name": "model", "type": "string"}],
    }
    schema_id = register(client, subject(), schema, "avro").json()["id"]
    ok = client.post(f"/api/v1/validate/{schema_id}", json={"tokens": 3, "model": "m"})
    assert ok.json()["is_valid"] is True
    bad = client.post(f"/api/v1/validate/{schema_id}", json={"tokens": "x", "model": "m"})
    assert bad.json()["is_valid"] is False


def test_protobuf_data_is_validated_by_the_json_mapping(client):
    proto = 'syntax = "proto3";\nmessage Prompt { string text = 1; int32 n = 2; }\n'
    schema_id = register(client, subject(), proto, "protobuf").json()["id"]
    assert client.get(f"/api/v1/schemas/{schema_id}").json()["schema"] == proto
    response = client.post(f"/api/v1/validate/{schema_id}", json={"text": "x", "n": 3})
    assert response.status_code == 200
    assert response.json() == {"is_valid": True, "errors": []}
    bad = client.post(f"/api/v1/validate/{schema_id}", json={"text": "x", "n": "many"})
    assert bad.json()["is_valid"] is False
    assert "n" in bad.json()["errors"][0]
    unknown_import = 'syntax = "proto3";\nimport "other.proto";\nmessage P { other.T t = 1; }\n'
    other_id = register(client, subject(), unknown_import, "protobuf").json()["id"]
    response = client.post(f"/api/v1/validate/{other_id}", json={})
    assert response.status_code == 422
    assert response.json()["error_code"] == "UNSUPPORTED_OPERATION"


def test_compatibility_check_endpoint(client):
    old = register(client, subject(), CHAT).json()["id"]
    narrower = {**CHAT, "properties": {"prompt": {"type": "string", "maxLength": 10}}}
    new = register(client, subject(), narrower).json()["id"]
    body = {"schema_id": new, "compared_schema_id": old, "mode": "BACKWARD"}
    result = client.post("/api/v1/compatibility/check", json=body, headers=auth()).json()
    assert result["is_compatible"] is False
    assert result["violations"][0]["rule"] == "BOUND_NARROWED"
    forward = client.post(
        "/api/v1/compatibility/check", json={**body, "mode": "FORWARD"}, headers=auth()
    )
    assert forward.json()["is_compatible"] is True


def test_lists_subjects_versions_and_latest(client):
    subj = subject()
    register(client, subj, CHAT)
    wider = {**CHAT, "properties": {"prompt": {"type": "string", "maxLength": 5000}}}
    latest_id = register(client, subj, wider).json()["id"]
    assert subj in client.get("/api/v1/subjects").json()["subjects"]
    assert client.get(f"/api/v1/subjects/{subj}/versions").json()["versions"] == ["1.0.0", "1.1.0"]
    assert client.get(f"/api/v1/subjects/{subj}/versions/latest").json()["id"] == latest_id
    assert client.get(f"/api/v1/subjects/{subj}/versions/1.0.0").json()["version"] == "1.0.0"
    assert client.get(f"/api/v1/subjects/{subj}/versions/9.9.9").status_code == 404
    page = client.get("/api/v1/schemas", params={"subject_prefix": subj, "limit": 1}).json()
    assert page["total"] == 2
    assert len(page["schemas"]) == 1


@pytest.mark.parametrize("prefix", ["a\x00b", "caf\u00e9", "x" * 256, "a b"])
def test_a_subject_prefix_no_subject_can_have_is_400_naming_the_field(client, prefix):
    # A NUL byte reached PostgreSQL (which cannot hold one in text) and came back as 500.
    response = client.get("/api/v1/schemas", params={"subject_prefix": prefix})
    assert response.status_code == 400
    assert response.json()["details"] == {"field": "subject_prefix"}


def test_soft_delete_hides_schema_and_invalidates_cache(client):
    schema_id = register(client, subject(), CHAT).json()["id"]
    client.get(f"/api/v1/schemas/{schema_id}")  # fills the cache
    assert client.delete(f"/api/v1/schemas/{schema_id}").status_code == 401
    deleted = client.delete(f"/api/v1/schemas/{schema_id}", headers=auth())
    assert deleted.status_code == 200
    assert redis.Redis.from_url(REDIS_URL).exists(f"schema:{schema_id}") == 0
    assert client.get(f"/api/v1/schemas/{schema_id}").status_code == 404
    kept = client.get(f"/api/v1/schemas/{schema_id}", params={"include_deleted": "true"})
    assert kept.json()["state"] == "DELETED"


def test_writes_need_a_valid_api_key_reads_do_not(client):
    body = {"subject": subject(), "schema": CHAT, "schema_type": "json"}
    missing = client.post("/api/v1/schemas", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.post("/api/v1/schemas", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.json()["error_code"] == "INVALID_API_KEY"
    assert client.get("/api/v1/subjects").status_code == 200


def test_body_over_limit_is_413(client):
    big = b'{"x": "' + b"a" * (10 * 1024 * 1024) + b'"}'
    response = client.post("/api/v1/schemas", content=big, headers=auth())
    assert response.status_code == 413
    assert response.json()["error_code"] == "PAYLOAD_TOO_LARGE"


def test_bad_json_and_unknown_fields_are_400(client):
    broken = client.post("/api/v1/schemas", content=b"{", headers=auth())
    assert broken.json()["error_code"] == "INVALID_JSON"
    extra = register(client, subject(), CHAT, colour="red")
    assert extra.status_code == 400
    assert extra.json()["details"]["field"] == "colour"


def test_a_nul_character_anywhere_in_the_body_is_400_naming_where(client):
    # PostgreSQL cannot store U+0000 in text or jsonb: a clear 400, not a 500.
    for extra, where in (
        ({"description": "a\x00b"}, "$.description"),
        ({"tags": ["ok", "n\x00l"]}, "$.tags[1]"),
        ({"metadata": {"k\x00": 1}}, "$.metadata (a key)"),
    ):
        response = register(client, subject(), CHAT, **extra)
        assert response.status_code == 400, response.text
        assert response.json()["details"]["field"] == where
    # The six characters backslash-u-0000 are ordinary text.
    assert register(client, subject(), CHAT, description="\\u0000").status_code == 201


def test_request_id_is_echoed(client):
    response = client.get("/api/v1/schemas/nope", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"


def test_health_ready_and_openapi_report_version(client):
    health = client.get("/health").json()
    assert health["status"] == "healthy"
    assert health["components"]["database"]["status"] == "up"
    assert health["components"]["redis"]["status"] == "up"
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["version"] == health["version"]
    assert client.get("/openapi.json").json()["paths"]["/api/v1/schemas"]


def test_metrics_listener_has_spec_names(client, server: Server):
    register(client, subject(), CHAT)
    text = httpx.get(server.metrics_url).text
    for name in (
        "schema_registry_http_requests_total",
        "schema_registry_http_request_duration_seconds_bucket",
        "schema_registry_schemas_registered_total",
        "schema_registry_build_info",
        "schema_registry_cache_operations_total",
        "schema_registry_db_query_duration_seconds_bucket",
    ):
        assert name in text, name
    assert 'path="/api/v1/schemas"' in text


def test_id_case_does_not_split_the_cache(client):
    schema_id = register(client, subject(), CHAT).json()["id"]
    assert client.get(f"/api/v1/schemas/{schema_id.upper()}").status_code == 200
    assert client.delete(f"/api/v1/schemas/{schema_id}", headers=auth()).status_code == 200
    assert client.get(f"/api/v1/schemas/{schema_id.upper()}").status_code == 404
