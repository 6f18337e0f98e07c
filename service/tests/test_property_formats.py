"""Property-based: random valid schemas of each format, checked and validated.

Through the functions (many examples): a schema is compatible with itself in every
mode, and comparing any two never raises. Through the HTTP API (fewer examples, the
real server): register, check and validate random schemas and data: never a 5xx.
"""

from __future__ import annotations

import uuid

import orjson
from helpers import auth
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schema_registry import compatibility
from schema_registry.errors import InvalidSchemaError
from schema_registry.formats import avro, json_schema, protobuf

NAMES = st.sampled_from(["a", "b", "c", "id", "x_1", "S_t"])
SCALAR = st.sampled_from(["string", "integer", "number", "boolean", "null"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(NAMES, inner, max_size=3),
    max_leaves=8,
)


def _leaf() -> st.SearchStrategy:
    bounds = st.fixed_dictionaries(
        {},
        optional={
            "minimum": st.integers(-3, 3),
            "maximum": st.integers(-3, 3),
            "minLength": st.integers(0, 3),
            "maxLength": st.integers(0, 5),
            "pattern": st.sampled_from(["^a", "b$", "^[0-9]+$"]),
            "multipleOf": st.sampled_from([1, 2, 0.5]),
            "format": st.sampled_from(["email", "date"]),
        },
    )
    typed = st.builds(lambda t, b: {"type": t, **b}, SCALAR, bounds)
    return (
        typed
        | st.builds(
            lambda v: {"enum": v}, st.lists(st.integers(0, 3), min_size=1, max_size=3, unique=True)
        )
        | st.builds(lambda v: {"const": v}, st.integers(0, 2))
        | st.booleans()
        | st.just({})
    )


def _node(inner: st.SearchStrategy) -> st.SearchStrategy:
    props = st.dictionaries(NAMES, inner, max_size=3)
    obj = st.builds(
        lambda p, req, extra, pat: {
            "type": "object",
            "properties": p,
            "required": sorted(set(req) & set(p)) or sorted(set(req))[:1],
            **({"additionalProperties": extra} if extra is not None else {}),
            **({"patternProperties": {"^S_": pat}} if pat is not None else {}),
        },
        props,
        st.lists(NAMES, max_size=2),
        st.none() | st.booleans() | inner,
        st.none() | inner,
    )
    arr = st.builds(
        lambda items, extra, mn: {
            "type": "array",
            "items": items,
            **({"additionalItems": extra} if isinstance(items, list) and extra is not None else {}),
            **({"minItems": mn} if mn is not None else {}),
        },
        inner | st.lists(inner, max_size=3),
        st.none() | st.booleans() | inner,
        st.none() | st.integers(0, 2),
    )
    combos = st.builds(
        lambda key, branches: {key: branches},
        st.sampled_from(["anyOf", "oneOf", "allOf"]),
        st.lists(inner, min_size=1, max_size=3),
    )
    others = (
        st.builds(lambda n: {"not": n}, inner)
        | st.builds(lambda i, t: {"if": i, "then": t}, inner, inner)
        | st.builds(
            lambda d: {"dependencies": {"a": d}}, st.lists(NAMES, max_size=2, unique=True) | inner
        )
        | st.builds(lambda c: {"type": "array", "contains": c}, inner)
        | st.builds(lambda n: {"propertyNames": n}, inner)
    )
    return obj | arr | combos | others


JSON_SCHEMAS = st.recursive(_leaf(), _node, max_leaves=10)


def _json(document):
    try:
        return json_schema.parse(orjson.dumps(document).decode())
    except InvalidSchemaError:
        assume(False)


AVRO_PRIMITIVES = st.sampled_from(
    ["null", "boolean", "int", "long", "float", "double", "string", "bytes"]
)


def _avro_node(inner: st.SearchStrategy) -> st.SearchStrategy:
    return (
        st.builds(lambda t: {"type": "array", "items": t}, inner)
        | st.builds(lambda t: {"type": "map", "values": t}, inner)
        | st.builds(
            lambda names, kinds: {
                "type": "record",
                "name": f"R{uuid.uuid4().hex[:6]}",
                "fields": [{"name": n, "type": k} for n, k in zip(names, kinds, strict=False)],
            },
            st.lists(st.sampled_from(["f", "g", "h"]), unique=True, max_size=3),
            st.lists(inner, min_size=3, max_size=3),
        )
    )


AVRO_SCHEMAS = st.recursive(AVRO_PRIMITIVES, _avro_node, max_leaves=6)
PROTO_TYPES = st.sampled_from(
    [
        "int32",
        "int64",
        "uint32",
        "sint32",
        "fixed64",
        "bool",
        "string",
        "bytes",
        "double",
        "Sub",
        "E",
    ]
)


@st.composite
def proto_files(draw):
    fields = []
    numbers = draw(st.lists(st.integers(1, 12), unique=True, max_size=6))
    oneof = []
    for number in numbers:
        kind = draw(st.sampled_from(["plain", "repeated", "map", "oneof"]))
        type_ = draw(PROTO_TYPES)
        if kind == "map":
            fields.append(f"map<string, {type_}> f{number} = {number};")
        elif kind == "oneof":
            oneof.append(f"{type_} f{number} = {number};")
        else:
            fields.append(
                f"{'repeated ' if kind == 'repeated' else ''}{type_} f{number} = {number};"
            )
    if oneof:
        fields.append("oneof choice { " + " ".join(oneof) + " }")
    return (
        'syntax = "proto3";\npackage p.v1;\nenum E { E0 = 0; E1 = 1; }\n'
        "message Sub { int32 x = 1; }\nmessage M { " + " ".join(fields) + " }\n"
    )


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(JSON_SCHEMAS, JSON_SCHEMAS)
def test_json_schema_compare_is_total_and_reflexive(first, second):
    a, b = _json(first), _json(second)
    assert compatibility.check(json_schema, "FULL", a, [("1", a)]) == []
    compatibility.check(json_schema, "FULL", a, [("1", b)])


@FAST
@given(AVRO_SCHEMAS, AVRO_SCHEMAS)
def test_avro_compare_is_total_and_reflexive(first, second):
    a, b = avro.parse(orjson.dumps(first).decode()), avro.parse(orjson.dumps(second).decode())
    assert compatibility.check(avro, "FULL", a, [("1", a)]) == []
    compatibility.check(avro, "FULL", a, [("1", b)])


@FAST
@given(proto_files(), proto_files(), JSON_VALUES)
def test_protobuf_compare_and_validate_are_total(first, second, data):
    a, b = protobuf.parse(first), protobuf.parse(second)
    assert compatibility.check(protobuf, "FULL", a, [("1", a)]) == []
    compatibility.check(protobuf, "FULL", a, [("1", b)])
    assert isinstance(protobuf.validate(a, data), list)


def _register(client, schema, kind: str) -> str | None:
    body = {"subject": f"llm.prop{uuid.uuid4().hex[:10]}.s", "schema": schema, "schema_type": kind}
    response = client.post("/api/v1/schemas", json=body, headers=auth())
    assert response.status_code < 500, response.text
    return response.json()["id"] if response.status_code in (200, 201) else None


def _exercise(client, first_id, second_id, data, mode):
    check = client.post(
        "/api/v1/compatibility/check",
        json={"schema_id": first_id, "compared_schema_id": second_id, "mode": mode},
        headers=auth(),
    )
    assert check.status_code == 200, check.text
    valid = client.post(f"/api/v1/validate/{first_id}", content=orjson.dumps(data))
    assert valid.status_code in (200, 422), valid.text


HTTP = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
MODES = st.sampled_from(["BACKWARD", "FORWARD", "FULL", "NONE"])


@HTTP
@given(JSON_SCHEMAS, JSON_SCHEMAS, JSON_VALUES, MODES)
def test_http_json_schema_never_5xx(client, first, second, data, mode):
    ids = [_register(client, s, "json") for s in (first, second)]
    assume(all(ids))
    _exercise(client, ids[0], ids[1], data, mode)


@HTTP
@given(AVRO_SCHEMAS, AVRO_SCHEMAS, JSON_VALUES, MODES)
def test_http_avro_never_5xx(client, first, second, data, mode):
    ids = [_register(client, orjson.dumps(s).decode(), "avro") for s in (first, second)]
    assume(all(ids))
    _exercise(client, ids[0], ids[1], data, mode)


@HTTP
@given(proto_files(), proto_files(), JSON_VALUES, MODES)
def test_http_protobuf_never_5xx(client, first, second, data, mode):
    ids = [_register(client, s, "protobuf") for s in (first, second)]
    assume(all(ids))
    _exercise(client, ids[0], ids[1], data, mode)
