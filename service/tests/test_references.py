"""Schema references: register with references, resolve them in validation and
compatibility, refuse to delete a referenced schema, list dependents."""

from __future__ import annotations

import uuid

import orjson
from helpers import auth

ADDRESS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ORDER = {"type": "object", "properties": {"ship_to": {"$ref": "address.json"}}}


def subject(tag: str) -> str:
    return f"llm.refs{uuid.uuid4().hex[:8]}.{tag}"


def register(client, subj, schema, kind="json", refs=None, **extra):
    body = {"subject": subj, "schema": schema, "schema_type": kind, **extra}
    if refs is not None:
        body["references"] = refs
    return client.post("/api/v1/schemas", json=body, headers=auth())


def test_json_reference_is_stored_resolved_and_used_in_validation(client):
    address_subject = subject("address")
    address = register(client, address_subject, ADDRESS).json()["id"]
    ref = {"name": "address.json", "subject": address_subject, "version": "latest"}
    order = register(client, subject("order"), ORDER, refs=[ref])
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    listed = client.get(f"/api/v1/schemas/{order_id}/references").json()["references"]
    assert listed == [
        {"name": "address.json", "id": address, "subject": address_subject, "version": "1.0.0"}
    ]
    good = client.post(f"/api/v1/validate/{order_id}", json={"ship_to": {"city": "Oslo"}})
    assert good.json() == {"is_valid": True, "errors": []}
    bad = client.post(f"/api/v1/validate/{order_id}", json={"ship_to": {"city": 7}})
    assert bad.json()["is_valid"] is False
    assert "/ship_to/city" in bad.json()["errors"][0]


def test_referenced_schema_cannot_be_deleted_and_dependents_are_listed(client):
    address_subject = subject("address")
    address = register(client, address_subject, ADDRESS).json()["id"]
    ref = {"name": "address.json", "subject": address_subject, "version": "1.0.0"}
    order_id = register(client, subject("order"), ORDER, refs=[ref]).json()["id"]
    dependents = client.get(f"/api/v1/schemas/{address}/dependents").json()["dependents"]
    assert [d["id"] for d in dependents] == [order_id]
    for permanent in ("false", "true"):
        refused = client.delete(
            f"/api/v1/schemas/{address}", params={"permanent": permanent}, headers=auth()
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["error_code"] == "SCHEMA_REFERENCED"
        assert refused.json()["details"]["dependents"][0]["id"] == order_id
    assert client.get(f"/api/v1/schemas/{address}").status_code == 200  # nothing changed
    assert client.delete(f"/api/v1/schemas/{order_id}", headers=auth()).status_code == 200
    assert client.get(f"/api/v1/schemas/{address}/dependents").json()["dependents"] == []
    assert client.delete(f"/api/v1/schemas/{address}", headers=auth()).status_code == 200


def test_compatibility_follows_the_referenced_schema(client):
    v1_subject, v2_subject = subject("addr1"), subject("addr2")
    register(client, v1_subject, ADDRESS)
    changed = {**ADDRESS, "properties": {"city": {"type": "integer"}}}
    register(client, v2_subject, changed)
    orders = subject("order")
    first = register(
        client,
        orders,
        ORDER,
        refs=[{"name": "address.json", "subject": v1_subject, "version": "1.0.0"}],
    )
    assert first.status_code == 201
    # Same text, the name now bound to an incompatible address: refused by BACKWARD.
    second = register(
        client,
        orders,
        {**ORDER, "title": "v2"},
        refs=[{"name": "address.json", "subject": v2_subject, "version": "1.0.0"}],
    )
    assert second.status_code == 409, second.text
    violation = second.json()["details"]["violations"][0]
    assert violation["path"] == "/properties/ship_to/properties/city"


def test_avro_and_protobuf_references(client):
    avro_subject = subject("avro")
    addr = {
        "type": "record",
        "name": "Addr",
        "namespace": "x",
        "fields": [{"name": "city", "type": "string"}],
    }
    register(client, avro_subject, orjson.dumps(addr).decode(), "avro")
    main = {
        "type": "record",
        "name": "Order",
        "namespace": "x",
        "fields": [{"name": "to", "type": "x.Addr"}],
    }
    ref = [{"name": "x.Addr", "subject": avro_subject, "version": "latest"}]
    without = register(client, subject("order"), orjson.dumps(main).decode(), "avro")
    assert without.status_code == 422
    order = register(client, subject("order"), orjson.dumps(main).decode(), "avro", refs=ref)
    assert order.status_code == 201, order.text
    oid = order.json()["id"]
    assert client.post(f"/api/v1/validate/{oid}", json={"to": {"city": "x"}}).json()["is_valid"]
    assert not client.post(f"/api/v1/validate/{oid}", json={"to": {"city": 1}}).json()["is_valid"]
    proto_subject = subject("proto")
    register(
        client,
        proto_subject,
        'syntax = "proto3";\npackage o.v1;\nmessage T { int32 n = 1; }\n',
        "protobuf",
    )
    text = 'syntax = "proto3";\nimport "o.proto";\nmessage M { o.v1.T t = 1; }\n'
    ref = [{"name": "o.proto", "subject": proto_subject, "version": "latest"}]
    pid = register(client, subject("pm"), text, "protobuf", refs=ref).json()["id"]
    assert client.post(f"/api/v1/validate/{pid}", json={"t": {"n": 2}}).json()["is_valid"]
    assert not client.post(f"/api/v1/validate/{pid}", json={"t": {"n": "x"}}).json()["is_valid"]


def test_bad_references_are_refused_and_change_nothing(client):
    subj = subject("order")
    cases = [
        ("not a list", 400),
        ([{"name": "a"}], 400),
        ([{"name": "a", "subject": "bad subject", "version": "1.0.0"}], 400),
        ([{"name": "a", "subject": "llm.x", "version": "one"}], 400),
        ([{"name": "", "subject": "llm.x", "version": "latest"}], 400),
        ([{"name": "a", "subject": subject("missing"), "version": "latest"}], 422),
    ]
    for refs, status in cases:
        response = register(client, subj, ORDER, refs=refs)
        assert response.status_code == status, (refs, response.text)
    avro_subject = subject("avro")
    register(client, avro_subject, '"int"', "avro")
    mixed = register(
        client, subj, ORDER, refs=[{"name": "a", "subject": avro_subject, "version": "latest"}]
    )
    assert mixed.status_code == 422
    assert mixed.json()["error_code"] == "REFERENCE_FORMAT_MISMATCH"
    assert client.get(f"/api/v1/subjects/{subj}/versions").status_code == 404
