"""JSON Schema compatibility against the corpus in corpus/json_schema_pairs.json.

Each entry is an (old, new) pair with the verdict of each direction: BACKWARD reads old
data with the new schema, FORWARD new data with the old one. "source": "reference" marks
pairs whose verdicts the reference registries publish ("ref" names the test that does;
"published" the one direction it publishes, when not both; the other direction then
holds this registry's verdict, from the spec); "reference_differs" names a direction
where this registry deliberately answers otherwise (service/README.md says why).
Every pair is also checked wrapped as an object property and as array items, and a
sample goes through the HTTP API.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import orjson
import pytest
from helpers import assert_api_verdicts, auth, reference_agreement

from schema_registry import compatibility
from schema_registry.config import COMPATIBILITY_MODES, load_config
from schema_registry.errors import ConfigError, InvalidSchemaError
from schema_registry.formats import json_schema

CORPUS = json.loads((Path(__file__).parent / "corpus" / "json_schema_pairs.json").read_text())


def _wrap(schema, how: str):
    if how == "plain":
        return schema
    draft = schema.get("$schema") if isinstance(schema, dict) else None
    inner = {k: v for k, v in schema.items() if k != "$schema"} if draft else schema
    if how == "property":
        wrapped = {"type": "object", "properties": {"w": inner}, "additionalProperties": False}
    else:
        wrapped = {"type": "array", "items": inner}
    return {"$schema": draft, **wrapped} if draft else wrapped


def _wrappable(case: dict) -> bool:
    text = json.dumps([case["old"], case["new"]])
    return '"$ref"' not in text


def parse(document):
    return json_schema.parse(orjson.dumps(document).decode())


def verdicts(old, new) -> tuple[list, list]:
    """(backward violations, forward violations) for old -> new."""
    old_parsed, new_parsed = parse(old), parse(new)
    return (
        json_schema.reader_rejections(new_parsed, old_parsed),
        json_schema.reader_rejections(old_parsed, new_parsed),
    )


def _params():
    for index, case in enumerate(CORPUS):
        for how in ("plain", "property", "items"):
            if how == "plain" or _wrappable(case):
                yield pytest.param(case, how, id=f"{index}-{how}-{case['case']}")


@pytest.mark.parametrize(("case", "how"), list(_params()))
def test_corpus_pair(case, how):
    backward, forward = verdicts(_wrap(case["old"], how), _wrap(case["new"], how))
    assert bool(backward) is (case["backward"] == "incompatible"), backward
    assert bool(forward) is (case["forward"] == "incompatible"), forward
    for item in backward + forward:
        assert set(item) == {"rule", "path", "message"}
        assert item["path"].startswith("/")


@pytest.mark.parametrize("case", [c for c in CORPUS if "rule" in c], ids=lambda c: c["case"])
def test_corpus_rule_is_named(case):
    backward, forward = verdicts(case["old"], case["new"])
    found = backward if case["backward"] == "incompatible" else forward
    assert case["rule"] in {v["rule"] for v in found}, found


def test_agreement_with_the_reference_registries(capsys):
    """Prints the agreement rate; every difference is one the corpus declares."""
    references = [case for case in CORPUS if case["source"] == "reference"]
    agree, total, undeclared = reference_agreement(
        references, lambda case: verdicts(case["old"], case["new"])
    )
    rate = agree / total
    with capsys.disabled():
        print(f"\nJSON Schema agreement with reference verdicts: {agree}/{total} = {rate:.1%}")
    assert not undeclared
    assert rate >= 0.93  # a floor under the figure service/README.md gives


@pytest.mark.parametrize("mode", COMPATIBILITY_MODES)
def test_modes_combine_directions(mode):
    case = next(c for c in CORPUS if c["case"] == "optional property added to an open object")
    found = compatibility.check(
        json_schema, mode, parse(case["new"]), [("1.0.0", parse(case["old"]))]
    )
    directions = {v["direction"] for v in found}
    expected = {"NONE": set(), "FORWARD": set(), "FORWARD_TRANSITIVE": set()}
    assert directions == expected.get(mode, {"backward"})


# --- drafts ----------------------------------------------------------------------------
TUPLE = {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}


def test_undeclared_schema_is_read_as_the_default_draft():
    parsed = parse(TUPLE)  # draft-07 by default: tuple-form items are valid
    assert json_schema.validate(parsed, ["a", 1]) == []
    assert json_schema.validate(parsed, ["a", "b"]) != []


def test_declared_draft_wins_and_default_is_a_setting():
    with pytest.raises(InvalidSchemaError, match="items"):
        parse({"$schema": "https://json-schema.org/draft/2020-12/schema", **TUPLE})
    json_schema.set_default_draft("draft-2020-12")
    try:
        with pytest.raises(InvalidSchemaError):
            parse(TUPLE)
        assert parse({"$schema": "http://json-schema.org/draft-07/schema#", **TUPLE})
    finally:
        json_schema.set_default_draft("draft-07")
    with pytest.raises(ValueError, match="draft-05"):
        json_schema.set_default_draft("draft-05")


# --- through the HTTP API --------------------------------------------------------------
SAMPLE = [c for c in CORPUS if c["source"] == "reference"][::6]


def _register(client, schema) -> str:
    subject = f"llm.compat{uuid.uuid4().hex[:10]}.s"
    body = {"subject": subject, "schema": schema, "schema_type": "json"}
    response = client.post("/api/v1/schemas", json=body, headers=auth())
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


@pytest.mark.parametrize("case", SAMPLE, ids=lambda c: c["case"])
def test_sample_through_the_api(client, case):
    old_id, new_id = _register(client, case["old"]), _register(client, case["new"])
    assert_api_verdicts(client, old_id, new_id, case)


# --- the setting ------------------------------------------------------------------------
def test_default_draft_setting_is_checked(tmp_path):
    path = tmp_path / "config.yml"
    db = "database: {url: 'postgresql://u@db/x'}\n"
    path.write_text(db)
    assert load_config(str(path), env={}).json_schema_default_draft == "draft-07"
    path.write_text(db + "registry: {json_schema_default_draft: draft-2020-12}\n")
    assert load_config(str(path), env={}).json_schema_default_draft == "draft-2020-12"
    path.write_text(db + "registry: {json_schema_default_draft: draft7}\n")
    with pytest.raises(ConfigError, match=r"registry\.json_schema_default_draft: must be one of"):
        load_config(str(path), env={})
