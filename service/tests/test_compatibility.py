"""Table-driven compatibility rules: each rule, each of the 7 modes, breaking and not.

A case is (old, new, breaks_backward, breaks_forward). What each mode must answer
follows from the definitions: BACKWARD* fails when the new schema cannot read old data,
FORWARD* when the old schema cannot read new data, FULL* when either, NONE never.
"""

from __future__ import annotations

import orjson
import pytest

from schema_registry import compatibility
from schema_registry.config import COMPATIBILITY_MODES as MODES
from schema_registry.formats import avro, json_schema, protobuf


def expected_break(mode: str, backward: bool, forward: bool) -> bool:
    if mode == "NONE":
        return False
    if mode.startswith("BACKWARD"):
        return backward
    if mode.startswith("FORWARD"):
        return forward
    return backward or forward


def obj(props: dict, required=(), **extra) -> dict:
    return {"type": "object", "properties": props, "required": list(required), **extra}


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741 - reads as "integer" in the tables

# rule -> (old, new, breaks_backward, breaks_forward)
JSON_CASES = {
    "REQUIRED_ADDED": [
        (obj({"a": S}), obj({"a": S, "b": S}, ["b"]), True, False),
        # A typed property added to an open object: old data may hold it with any value.
        (obj({"a": S}), obj({"a": S, "b": S}), True, False),
    ],
    "TYPE_NARROWED": [
        (obj({"a": {"type": ["string", "null"]}}), obj({"a": S}), True, False),
        (obj({"a": I}), obj({"a": {"type": "number"}}), False, True),
    ],
    "ENUM_NARROWED": [
        (obj({"m": {"enum": ["gpt", "llama"]}}), obj({"m": {"enum": ["gpt"]}}), True, False),
        (obj({"m": {"enum": ["gpt"]}}), obj({"m": {"enum": ["gpt", "llama"]}}), False, True),
    ],
    "BOUND_NARROWED": [
        (
            obj({"p": {"type": "string", "maxLength": 100}}),
            obj({"p": {"type": "string", "maxLength": 10}}),
            True,
            False,
        ),
        (
            obj({"t": {"type": "integer", "minimum": 0}}),
            obj({"t": {"type": "integer", "minimum": -1}}),
            False,
            True,
        ),
    ],
    "PATTERN_CHANGED": [
        (obj({"id": S}), obj({"id": {"type": "string", "pattern": "^[a-z]+$"}}), True, False),
        (
            obj({"id": {"type": "string", "pattern": "^a"}}),
            obj({"id": {"type": "string", "pattern": "^a"}}),
            False,
            False,
        ),
    ],
    "ADDITIONAL_PROPERTIES_NARROWED": [
        (obj({"a": S}), obj({"a": S}, additionalProperties=False), True, False),
        (
            obj({"a": S}, additionalProperties=False),
            obj({"a": S}, additionalProperties=False, description="same"),
            False,
            False,
        ),
    ],
    "PROPERTY_REMOVED": [
        (
            obj({"a": S, "b": S}, additionalProperties=False),
            obj({"a": S}, additionalProperties=False),
            True,
            False,
        ),
        # Removed from an open object: the new schema still reads it; the old schema
        # cannot trust what new writers put under "b".
        (obj({"a": S, "b": S}), obj({"a": S}), False, True),
    ],
    "CONST_CHANGED": [
        (obj({"v": {"const": 1}}), obj({"v": {"const": 2}}), True, True),
        (obj({"v": {"const": 1}}), obj({"v": {"const": 1}, "w": {}}), False, False),
    ],
    "UNIQUE_ITEMS_ADDED": [
        (
            {"type": "array", "items": S},
            {"type": "array", "items": S, "uniqueItems": True},
            True,
            False,
        ),
        ({"type": "array", "items": S}, {"type": "array", "items": S, "minItems": 0}, False, False),
    ],
    "UNION_NARROWED": [
        ({"anyOf": [S, I, {"type": "null"}]}, {"anyOf": [S, I]}, True, False),
        ({"anyOf": [S]}, {"anyOf": [S, {"type": "null"}]}, False, True),
    ],
}


def _json_cases():
    for rule, cases in JSON_CASES.items():
        for index, (old, new, back, fwd) in enumerate(cases):
            for mode in MODES:
                case = (rule, index, old, new, back, fwd)
                yield pytest.param(case, mode, id=f"{rule}-{index}-{mode}")


def _parse_json(document) -> object:
    return json_schema.parse(orjson.dumps(document).decode())


@pytest.mark.parametrize(("case", "mode"), list(_json_cases()))
def test_json_schema_rule(case, mode):
    rule, index, old, new, back, fwd = case
    violations = compatibility.check(
        json_schema, mode, _parse_json(new), [("1.0.0", _parse_json(old))]
    )
    breaks = expected_break(mode, back, fwd)
    assert bool(violations) is breaks, violations
    # The first case of each rule is the one that breaks it (the second is a control).
    if breaks and index == 0:
        assert rule in {v["rule"] for v in violations}


def test_unique_items_case_names_its_rule():
    old = _parse_json({"type": "array", "items": S})
    new = _parse_json({"type": "array", "items": S, "uniqueItems": True})
    assert [v["rule"] for v in json_schema.reader_rejections(new, old)] == ["UNIQUE_ITEMS_ADDED"]


def test_violation_path_points_into_nested_objects():
    old = _parse_json(obj({"usage": obj({"tokens": I}, additionalProperties=False)}))
    new = _parse_json(
        obj({"usage": obj({"tokens": I, "cost": I}, ["cost"], additionalProperties=False)})
    )
    (violation,) = compatibility.check(json_schema, "BACKWARD", new, [("1.0.0", old)])
    assert violation["path"] == "/properties/usage/properties/cost"
    assert violation["against_version"] == "1.0.0"
    assert violation["direction"] == "backward"


def with_defs(root: dict, **defs) -> dict:
    return {**root, "$defs": defs}


def ref(name: str) -> dict:
    return {"$ref": f"#/$defs/{name}"}


# Local references are followed: what a definition says counts, not its name.
REF_CASES = [
    # A definition renamed, same content: nothing breaks.
    (
        with_defs(obj({"u": ref("Usage")}), Usage=obj({"tokens": I})),
        with_defs(obj({"u": ref("TokenUsage")}), TokenUsage=obj({"tokens": I})),
        False,
        False,
    ),
    # A definition inlined where it was referenced: nothing breaks.
    (
        with_defs(obj({"u": ref("Usage")}), Usage=obj({"tokens": I})),
        obj({"u": obj({"tokens": I})}),
        False,
        False,
    ),
    # A required field added inside the referenced definition: breaks backward.
    (
        with_defs(obj({"u": ref("Usage")}), Usage=obj({"tokens": I})),
        with_defs(obj({"u": ref("Usage")}), Usage=obj({"tokens": I, "cost": I}, ["cost"])),
        True,
        False,
    ),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("index", range(len(REF_CASES)))
def test_local_references_are_followed(index, mode):
    old, new, back, fwd = REF_CASES[index]
    violations = compatibility.check(
        json_schema, mode, _parse_json(new), [("1.0.0", _parse_json(old))]
    )
    assert bool(violations) is expected_break(mode, back, fwd), violations
    for violation in violations:  # the added property is typed (open model) and required
        assert violation["rule"] in ("REQUIRED_ADDED", "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL")
        assert violation["path"] == "/properties/u/properties/cost"


def test_recursive_references_terminate_and_still_find_a_break():
    tree = obj({"name": S, "children": {"type": "array", "items": ref("Node")}})
    old = with_defs(ref("Node"), Node=tree)
    deeper = obj({"name": S, "size": I, "children": {"type": "array", "items": ref("Tree")}})
    new = with_defs(ref("Tree"), Tree={**deeper, "required": ["size"]})
    found = json_schema.reader_rejections(_parse_json(new), _parse_json(old))
    assert {(v["rule"], v["path"]) for v in found} == {
        ("REQUIRED_ADDED", "/properties/size"),
        ("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", "/properties/size"),
    }
    assert json_schema.reader_rejections(_parse_json(old), _parse_json(old)) == []


def test_remote_references_are_compared_by_their_text():
    old = _parse_json(obj({"u": {"$ref": "https://schemas.example/usage-1.json"}}))
    new = _parse_json(obj({"u": {"$ref": "https://schemas.example/usage-2.json"}}))
    (violation,) = json_schema.reader_rejections(new, old)
    assert violation["rule"] == "REF_CHANGED"


# v3 is compatible with v2 but not with v1: only transitive modes see it. (Avro: a
# field dropped, then added back with another type and a default. JSON Schema's rules
# are set inclusion, which is transitive, so no JSON chain can show the difference.)
TRANSITIVE_CHAIN = [
    {"type": "record", "name": "T", "fields": [{"name": "x", "type": "int"}]},
    {"type": "record", "name": "T", "fields": []},
    {"type": "record", "name": "T", "fields": [{"name": "x", "type": "string", "default": ""}]},
]


@pytest.mark.parametrize("mode", MODES)
def test_transitive_modes_check_every_previous_version(mode):
    parsed = [avro.parse(orjson.dumps(d).decode()) for d in TRANSITIVE_CHAIN]
    previous = [("1.0.0", parsed[0]), ("1.1.0", parsed[1])]
    violations = compatibility.check(avro, mode, parsed[2], previous)
    assert bool(violations) is mode.endswith("_TRANSITIVE")
    assert all(v["against_version"] == "1.0.0" for v in violations)


def rec(fields, name="Event") -> dict:
    return {"type": "record", "name": name, "namespace": "llm", "fields": fields}


def field(name, kind, **extra) -> dict:
    return {"name": name, "type": kind, **extra}


ENUM = {"type": "enum", "name": "Role", "symbols": ["user", "assistant", "system"]}
ENUM_SMALL = {"type": "enum", "name": "Role", "symbols": ["user", "assistant"]}

AVRO_CASES = {
    "READER_FIELD_MISSING_DEFAULT": [
        (rec([field("a", "string")]), rec([field("a", "string"), field("b", "int")]), True, False),
        (
            rec([field("a", "string")]),
            rec([field("a", "string"), field("b", "int", default=0)]),
            False,
            False,
        ),
    ],
    "TYPE_MISMATCH": [
        (rec([field("n", "int")]), rec([field("n", "long")]), False, True),
        (rec([field("n", "int")]), rec([field("n", "int", doc="same type")]), False, False),
    ],
    "ENUM_SYMBOL_MISSING": [
        (rec([field("r", ENUM)]), rec([field("r", ENUM_SMALL)]), True, False),
        (rec([field("r", ENUM)]), rec([field("r", {**ENUM, "doc": "x"})]), False, False),
    ],
    "NAME_MISMATCH": [
        (rec([field("a", "int")]), rec([field("a", "int")], name="Other"), True, True),
        (
            rec([field("a", "int")]),
            {**rec([field("a", "int")], name="Other"), "aliases": ["llm.Event"]},
            False,
            True,
        ),
    ],
    "UNION_NO_MATCH": [
        (rec([field("u", "int")]), rec([field("u", ["null", "string"])]), True, True),
        (rec([field("u", "string")]), rec([field("u", ["null", "string"])]), False, True),
    ],
    "FIXED_SIZE_CHANGED": [
        (
            rec([field("h", {"type": "fixed", "name": "H", "size": 16})]),
            rec([field("h", {"type": "fixed", "name": "H", "size": 32})]),
            True,
            True,
        ),
        (
            rec([field("h", {"type": "fixed", "name": "H", "size": 16})]),
            rec(
                [
                    field("h", {"type": "fixed", "name": "H", "size": 16}),
                    field("x", "int", default=1),
                ]
            ),
            False,
            False,
        ),
    ],
}


def _avro_cases():
    for rule, cases in AVRO_CASES.items():
        for index, (old, new, back, fwd) in enumerate(cases):
            for mode in MODES:
                yield pytest.param((old, new, back, fwd), mode, id=f"{rule}-{index}-{mode}")


def _parse_avro(document):
    return avro.parse(orjson.dumps(document).decode())


@pytest.mark.parametrize(("case", "mode"), list(_avro_cases()))
def test_avro_rule(case, mode):
    old, new, back, fwd = case
    violations = compatibility.check(avro, mode, _parse_avro(new), [("1.0.0", _parse_avro(old))])
    assert bool(violations) is expected_break(mode, back, fwd), violations


@pytest.mark.parametrize("rule", list(AVRO_CASES))
def test_avro_breaking_case_names_its_rule(rule):
    old, new, back, _ = AVRO_CASES[rule][0]
    reader, writer = (
        (_parse_avro(new), _parse_avro(old)) if back else (_parse_avro(old), _parse_avro(new))
    )
    assert rule in {v["rule"] for v in avro.reader_rejections(reader, writer)}


def test_avro_recursive_types_terminate():
    node = {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
    parsed = _parse_avro(node)
    assert compatibility.check(avro, "FULL", parsed, [("1.0.0", parsed)]) == []


PROTO_OLD = 'syntax = "proto3";\nmessage Chat { string prompt = 1; int32 max_tokens = 2; }\n'
PROTO_TYPE_CHANGED = (
    'syntax = "proto3";\nmessage Chat { string prompt = 1; string max_tokens = 2; }\n'
)
PROTO_ADDED = (
    'syntax = "proto3";\nmessage Chat { string prompt = 1; int32 max_tokens = 2; '
    "float temperature = 3; }\n"
)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("new", "breaks"), [(PROTO_TYPE_CHANGED, True), (PROTO_ADDED, False)])
def test_protobuf_field_numbers(mode, new, breaks):
    violations = compatibility.check(
        protobuf, mode, protobuf.parse(new), [("1.0.0", protobuf.parse(PROTO_OLD))]
    )
    assert bool(violations) is (breaks and mode != "NONE")
