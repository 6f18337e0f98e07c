"""Protobuf wire compatibility: a table of (old, new, breaks backward, breaks forward).

Verdicts follow protobuf's own rules ("Updating A Message Type" in the language guide)
and the reference registries' Protobuf rules (oneof moves, removed messages, package).
corpus/protobuf_pairs.json holds the pairs whose verdicts the reference registries
publish (fields as in corpus/json_schema_pairs.json; "old_references"/"new_references"
name the registered files each side imports): the agreement with them is measured.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from helpers import assert_api_verdicts, auth, reference_agreement

from schema_registry import compatibility
from schema_registry.config import COMPATIBILITY_MODES as MODES
from schema_registry.formats import protobuf

HEAD = 'syntax = "proto3";\npackage llm.v1;\n'


def msg(body: str, extra: str = "") -> str:
    return f"{HEAD}{extra}message Chat {{ {body} }}\n"


def one(kind: str, label: str = "") -> str:
    return msg(f"{label} {kind} f = 1;".strip())


# (case, old, new, breaks backward, breaks forward, rule of the breaking direction)
CASES = [
    ("field added", msg("string a = 1;"), msg("string a = 1; int32 b = 2;"), False, False, None),
    ("field removed", msg("string a = 1; int32 b = 2;"), msg("string a = 1;"), False, False, None),
    ("field renamed", msg("string a = 1;"), msg("string b = 1;"), False, False, None),
    ("string to int32", one("string"), one("int32"), True, True, "FIELD_TYPE_CHANGED"),
    (
        "message to string",
        msg("Sub f = 1;", "message Sub { int32 x = 1; }\n"),
        one("string"),
        True,
        True,
        "FIELD_TYPE_CHANGED",
    ),
    (
        "message type changed",
        msg("A f = 1;", "message A {}\nmessage B {}\n"),
        msg("B f = 1;", "message A {}\nmessage B {}\n"),
        True,
        True,
        "FIELD_TYPE_CHANGED",
    ),
    (
        "nested type by short and full name",
        msg("message S { int32 c = 1; } S f = 1;"),
        msg("message S { int32 c = 1; } .llm.v1.Chat.S f = 1;"),
        False,
        False,
        None,
    ),
    (
        "package-qualified name",
        msg("Sub f = 1;", "message Sub {}\n"),
        msg("llm.v1.Sub f = 1;", "message Sub {}\n"),
        False,
        False,
        None,
    ),
    (
        "imported type kept",
        msg("google.protobuf.Timestamp t = 1;", 'import "google/protobuf/timestamp.proto";\n'),
        msg(".google.protobuf.Timestamp t = 1;", 'import "google/protobuf/timestamp.proto";\n'),
        False,
        False,
        None,
    ),
    (
        "imported type changed",
        msg("google.protobuf.Timestamp t = 1;"),
        msg("google.protobuf.Duration t = 1;"),
        True,
        True,
        "FIELD_TYPE_CHANGED",
    ),
    (
        "package changed",
        msg("string a = 1;"),
        msg("string a = 1;").replace("llm.v1", "llm.v2"),
        False,
        False,
        None,
    ),
    (
        "package changed, a message type changed",
        msg("Sub f = 1;", "message Sub { int32 x = 1; }\n"),
        msg("Sub f = 1;", "message Sub { string x = 1; }\n").replace("llm.v1", "llm.v2"),
        True,
        True,
        "FIELD_TYPE_CHANGED",
    ),
    (
        "message removed",
        msg("string a = 1;", "message Old {}\n"),
        msg("string a = 1;"),
        True,
        False,
        "MESSAGE_REMOVED",
    ),
    (
        "required field added (proto2)",
        'syntax = "proto2";\nmessage M { optional int32 a = 1; }',
        'syntax = "proto2";\nmessage M { optional int32 a = 1; required int32 b = 2; }',
        True,
        True,  # forward: the old reader reads data with a required field removed
        "REQUIRED_ADDED",
    ),
    (
        "optional field removed (proto2)",
        'syntax = "proto2";\nmessage M { optional int32 a = 1; optional int32 b = 2; }',
        'syntax = "proto2";\nmessage M { optional int32 a = 1; }',
        False,
        False,
        None,
    ),
    (
        "field moved into a new oneof",
        msg("string a = 1; int32 b = 2;"),
        msg("oneof c { string a = 1; } int32 b = 2;"),
        False,
        False,
        None,
    ),
    (
        "two fields moved into a new oneof",
        msg("string a = 1; int32 b = 2;"),
        msg("oneof c { string a = 1; int32 b = 2; }"),
        True,
        False,
        "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
    ),
    (
        "field moved into an existing oneof",
        msg("oneof c { string a = 1; } int32 b = 2;"),
        msg("oneof c { string a = 1; int32 b = 2; }"),
        True,
        False,
        "FIELD_MOVED_TO_EXISTING_ONEOF",
    ),
    (
        "oneof renamed",
        msg("oneof c { string a = 1; int32 b = 2; }"),
        msg("oneof d { string a = 1; int32 b = 2; }"),
        False,
        False,
        None,
    ),
    (
        "two oneofs merged",
        msg("oneof c { string a = 1; } oneof d { int32 b = 2; }"),
        msg("oneof e { string a = 1; int32 b = 2; }"),
        True,
        False,
        "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
    ),
    (
        "field moved out of a oneof",
        msg("oneof c { string a = 1; int32 b = 2; }"),
        msg("string a = 1; oneof c { int32 b = 2; }"),
        False,
        True,
        "FIELD_MOVED_TO_EXISTING_ONEOF",
    ),
    (
        "oneof field removed",
        msg("oneof c { string a = 1; int32 b = 2; }"),
        msg("oneof c { string a = 1; }"),
        True,
        False,
        "ONEOF_FIELD_REMOVED",
    ),
    (
        "oneof field added",
        msg("oneof c { string a = 1; }"),
        msg("oneof c { string a = 1; int32 b = 2; }"),
        False,
        True,
        "ONEOF_FIELD_REMOVED",
    ),
    (
        "oneof field type changed",
        msg("oneof c { string a = 1; }"),
        msg("oneof c { double a = 1; }"),
        True,
        True,
        "FIELD_TYPE_CHANGED",
    ),
    (
        "map value changed",
        msg("map<string, int32> m = 1;"),
        msg("map<string, string> m = 1;"),
        True,
        True,
        "MAP_VALUE_CHANGED",
    ),
    (
        "map key changed",
        msg("map<string, int32> m = 1;"),
        msg("map<int64, int32> m = 1;"),
        True,
        True,
        "MAP_KEY_CHANGED",
    ),
    (
        "map value wire-compatible",
        msg("map<string, int32> m = 1;"),
        msg("map<string, int64> m = 1;"),
        False,
        False,
        None,
    ),
    (
        "map to repeated",
        msg("map<string, int32> m = 1;"),
        msg("repeated string m = 1;"),
        True,
        True,
        "FIELD_KIND_CHANGED",
    ),
    (
        "map value by nested name",
        msg("message V {} map<string, V> m = 1;"),
        msg("message V {} map<string, .llm.v1.Chat.V> m = 1;"),
        False,
        False,
        None,
    ),
    ("repeated string to singular", one("string", "repeated"), one("string"), False, False, None),
    ("singular string to repeated", one("string"), one("string", "repeated"), False, False, None),
    (
        "repeated int32 to singular",
        one("int32", "repeated"),
        one("int32"),
        True,
        True,
        "FIELD_NUMERIC_LABEL_CHANGED",
    ),
    (
        "singular int32 to repeated",
        one("int32"),
        one("int32", "repeated"),
        True,
        True,
        "FIELD_NUMERIC_LABEL_CHANGED",
    ),
    (
        "repeated message to singular",
        msg("message S {} repeated S f = 1;"),
        msg("message S {} S f = 1;"),
        False,
        False,
        None,
    ),
    ("optional to singular", one("int32", "optional"), one("int32"), False, False, None),
    (
        "enum to int32",
        msg("enum E { A = 0; } E f = 1;"),
        msg("enum E { A = 0; } int32 f = 1;"),
        False,
        False,
        None,
    ),
    (
        "enum to string",
        msg("enum E { A = 0; } E f = 1;"),
        msg("enum E { A = 0; } string f = 1;"),
        True,
        True,
        "FIELD_TYPE_CHANGED",
    ),
]
GROUPS = [
    ["int32", "uint32", "int64", "uint64", "bool"],
    ["sint32", "sint64"],
    ["fixed32", "sfixed32"],
    ["fixed64", "sfixed64"],
    ["string", "bytes"],
]
ALL = sorted({t for g in GROUPS for t in g} | {"float", "double"})
# Every scalar pair: compatible exactly when both are in one wire group.
for a in ALL:
    for b in ALL:
        if a < b:
            same = any(a in g and b in g for g in GROUPS)
            rule = None if same else "FIELD_TYPE_CHANGED"
            CASES.append((f"{a} to {b}", one(a), one(b), not same, not same, rule))


def _violations(reader_text: str, writer_text: str) -> list:
    return protobuf.reader_rejections(protobuf.parse(reader_text), protobuf.parse(writer_text))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_protobuf_pair(case):
    _name, old, new, back, fwd, rule = case
    backward, forward = _violations(new, old), _violations(old, new)
    assert bool(backward) is back, backward
    assert bool(forward) is fwd, forward
    if rule:
        found = backward if back else forward
        assert rule in {v["rule"] for v in found}, found


@pytest.mark.parametrize("mode", MODES)
def test_protobuf_modes(mode):
    old, new = msg("string a = 1;", "message Old {}\n"), msg("string a = 1;")
    found = compatibility.check(protobuf, mode, protobuf.parse(new), [("1", protobuf.parse(old))])
    assert bool(found) is (mode != "NONE" and not mode.startswith("FORWARD"))


# Rules that follow protobuf's language guide and the reference registries in both
# directions, though the reader of one direction reads the data itself: each change and
# its reverse break BACKWARD and FORWARD, under the rule named per direction.
PROTO2 = 'syntax = "proto2";\nmessage M {{ optional int32 a = 1; {} }}'
BOTH_WAYS = [
    # (case, old, new, rule BACKWARD, rule FORWARD)
    (
        "required field removed",
        PROTO2.format("required string b = 2;"),
        PROTO2.format(""),
        "REQUIRED_FIELD_REMOVED",
        "REQUIRED_ADDED",
    ),
    (
        "required field added",
        PROTO2.format(""),
        PROTO2.format("required string b = 2;"),
        "REQUIRED_ADDED",
        "REQUIRED_FIELD_REMOVED",
    ),
    (
        "required relaxed to optional",
        PROTO2.format("required string b = 2;"),
        PROTO2.format("optional string b = 2;"),
        "REQUIRED_FIELD_REMOVED",
        "REQUIRED_ADDED",
    ),
    (
        "optional int32 to repeated",
        one("int32", "optional"),
        one("int32", "repeated"),
        "FIELD_NUMERIC_LABEL_CHANGED",
        "FIELD_NUMERIC_LABEL_CHANGED",
    ),
    (
        "repeated double to singular",
        one("double", "repeated"),
        one("double"),
        "FIELD_NUMERIC_LABEL_CHANGED",
        "FIELD_NUMERIC_LABEL_CHANGED",
    ),
    (
        "singular enum to repeated",
        msg("enum E { A = 0; } E f = 1;"),
        msg("enum E { A = 0; } repeated E f = 1;"),
        "FIELD_NUMERIC_LABEL_CHANGED",
        "FIELD_NUMERIC_LABEL_CHANGED",
    ),
    (
        "singular bool to repeated",
        one("bool"),
        one("bool", "repeated"),
        "FIELD_NUMERIC_LABEL_CHANGED",
        "FIELD_NUMERIC_LABEL_CHANGED",
    ),
]


@pytest.mark.parametrize("case", BOTH_WAYS, ids=[c[0] for c in BOTH_WAYS])
@pytest.mark.parametrize("mode", ["BACKWARD", "FORWARD"])
def test_protobuf_rule_in_each_direction(case, mode):
    _name, old, new, backward_rule, forward_rule = case
    found = compatibility.check(protobuf, mode, protobuf.parse(new), [("1", protobuf.parse(old))])
    rule = backward_rule if mode == "BACKWARD" else forward_rule
    assert rule in {v["rule"] for v in found}, found
    assert {v["direction"] for v in found} == {mode.lower()}, found


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (one("string", "optional"), one("string", "repeated")),  # string reads either
        (msg("message S {} S f = 1;"), msg("message S {} repeated S f = 1;")),
        (PROTO2.format("optional string b = 2;"), PROTO2.format("")),  # not required
        (one("int32", "optional"), one("int32")),  # presence only
    ],
)
@pytest.mark.parametrize("mode", ["BACKWARD", "FORWARD"])
def test_protobuf_label_changes_that_stay_compatible(old, new, mode):
    found = compatibility.check(protobuf, mode, protobuf.parse(new), [("1", protobuf.parse(old))])
    assert found == []


def test_protobuf_count(capsys):
    with capsys.disabled():
        print(f"\nProtobuf pairs: {len(CASES)}")
    assert len(CASES) > 80


# --- data validation by protobuf's JSON mapping ------------------------------------------
RICH = """syntax = "proto3";
package acme.v1;
import "google/protobuf/timestamp.proto";
message Reply {
  message Usage { int32 tokens = 1; }
  enum Finish { STOP = 0; LENGTH = 1; }
  Usage usage = 1;
  oneof body { string text = 2; bytes blob = 3; }
  map<string, Usage> per_model = 4;
  repeated int64 ids = 5;
  Finish finish = 6;
  google.protobuf.Timestamp at = 7;
}
"""


@pytest.mark.parametrize(
    ("data", "valid"),
    [
        ({}, True),
        ({"usage": {"tokens": 3}, "text": "hi", "perModel": {"m": {"tokens": 1}}}, True),
        ({"ids": ["1", 2], "finish": "LENGTH", "at": "2026-01-01T00:00:00Z"}, True),
        ({"usage": {"tokens": "many"}}, False),
        ({"text": "a", "blob": "YQ=="}, False),  # two members of one oneof
        ({"finish": "DONE"}, False),
        ({"unknown": 1}, False),
        ({"at": "yesterday"}, False),
        (["not", "an", "object"], False),
    ],
)
def test_protobuf_data_validation(data, valid):
    errors = protobuf.validate(protobuf.parse(RICH), data)
    assert (errors == []) is valid, errors


def test_protobuf_validation_of_unknown_imports_is_unsupported():
    parsed = protobuf.parse('syntax = "proto3";\nimport "x.proto";\nmessage M { x.T t = 1; }\n')
    with pytest.raises(NotImplementedError, match=r"x\.proto"):
        protobuf.validate(parsed, {})


# --- the reference corpus ----------------------------------------------------------------
CORPUS = json.loads((Path(__file__).parent / "corpus" / "protobuf_pairs.json").read_text())


def _side(case: dict, side: str):
    references = case.get(f"{side}_references", {})
    return protobuf.parse(case[side], tuple(references.items()))


def _verdicts(case: dict) -> tuple[list, list]:
    old, new = _side(case, "old"), _side(case, "new")
    return protobuf.reader_rejections(new, old), protobuf.reader_rejections(old, new)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c["case"])
def test_corpus_pair(case):
    backward, forward = _verdicts(case)
    assert bool(backward) is (case["backward"] == "incompatible"), backward
    assert bool(forward) is (case["forward"] == "incompatible"), forward


def test_agreement_with_the_reference_registries(capsys):
    """Prints the agreement rate; every difference is one the corpus declares."""
    agree, total, undeclared = reference_agreement(CORPUS, _verdicts)
    rate = agree / total
    with capsys.disabled():
        print(f"\nProtobuf agreement with reference verdicts: {agree}/{total} = {rate:.1%}")
    assert not undeclared
    assert rate >= 0.98  # a floor under the figure service/README.md gives


def _register(client, text: str, references: dict) -> int:
    refs = []
    for name, content in references.items():
        subject = f"llm.pref{uuid.uuid4().hex[:10]}.s"
        body = {"subject": subject, "schema": content, "schema_type": "protobuf"}
        response = client.post("/api/v1/schemas", json=body, headers=auth())
        assert response.status_code in (200, 201), response.text
        refs.append({"name": name, "subject": subject, "version": "latest"})
    body = {"subject": f"llm.pcompat{uuid.uuid4().hex[:10]}.s", "schema": text}
    body.update({"schema_type": "protobuf", "references": refs})
    response = client.post("/api/v1/schemas", json=body, headers=auth())
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


@pytest.mark.parametrize("case", CORPUS[::4], ids=lambda c: c["case"])
def test_sample_through_the_api(client, case):
    old_id = _register(client, case["old"], case.get("old_references", {}))
    new_id = _register(client, case["new"], case.get("new_references", {}))
    assert_api_verdicts(client, old_id, new_id, case)
