"""JSON Schema: parse and check with the draft the schema names, validate, compatibility."""

from __future__ import annotations

import re
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import jsonschema
import orjson
import referencing
import referencing.jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from schema_registry.errors import InvalidSchemaError
from schema_registry.formats import violation

_MAX_ERRORS = 50
_MAX_REF_CHAIN = 32
_REF = re.compile(rb'"\$ref":"([^"]*)"')

# The two documents being compared and the $ref pairs under comparison right now
# (a pair met again inside itself is a recursive schema: assumed equal, which ends it).
_Active = set[tuple[str, str]]
_CONTEXT: ContextVar[tuple[Any, Any, _Active, bool, tuple[dict, dict]]] = ContextVar(
    "json_schema_compare"
)
# The keywords the reader's and the writer's drafts know: validators ignore the others.
_KEYWORDS: ContextVar[tuple[frozenset[str], frozenset[str]]] = ContextVar("json_schema_keywords")


# Config names of the drafts (registry.json_schema_default_draft) -> validator classes.
DRAFTS: dict[str, type] = {
    "draft-04": jsonschema.Draft4Validator,
    "draft-06": jsonschema.Draft6Validator,
    "draft-07": jsonschema.Draft7Validator,
    "draft-2019-09": jsonschema.Draft201909Validator,
    "draft-2020-12": jsonschema.Draft202012Validator,
}
# A schema without $schema is read with this draft; draft-07 like the reference
# registries (set from the config at start: set_default_draft).
_DEFAULT: list[type] = [jsonschema.Draft7Validator]


def set_default_draft(name: str) -> None:
    """The draft for schemas that declare no $schema (config: json_schema_default_draft)."""
    if name not in DRAFTS:
        raise ValueError(f"unknown JSON Schema draft {name!r}: one of {', '.join(DRAFTS)}")
    _DEFAULT[0] = DRAFTS[name]


def parse(content: str, references: tuple[tuple[str, str], ...] = ()) -> Any:
    """A validator for the schema; references: (name, schema text) pairs that `$ref`
    values in it name (registered schemas referenced by subject and version)."""
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidSchemaError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(document, dict | bool):
        raise InvalidSchemaError("a JSON Schema must be an object or a boolean")
    cls = validator_for(document, default=_DEFAULT[0])
    try:
        cls.check_schema(document)
    except SchemaError as exc:
        where = "/" + "/".join(str(p) for p in exc.absolute_path)
        raise InvalidSchemaError(f"invalid JSON Schema at {where}: {exc.message}") from exc
    if not references:
        return cls(document, format_checker=cls.FORMAT_CHECKER)
    documents = {name: orjson.loads(text) for name, text in references}
    spec = referencing.jsonschema.specification_with(
        cls.META_SCHEMA["$schema"], default=referencing.jsonschema.DRAFT7
    )
    registry = referencing.Registry().with_resources(
        (name, referencing.Resource.from_contents(doc, default_specification=spec))
        for name, doc in documents.items()
    )
    validator = cls(document, format_checker=cls.FORMAT_CHECKER, registry=registry)
    return _WithReferences(validator, documents)


class _WithReferences:
    """A validator plus the referenced documents (for the compatibility walk)."""

    def __init__(self, validator: Any, documents: dict[str, Any]) -> None:
        self.validator = validator
        self.schema = validator.schema
        self._registry_refs = documents

    def iter_errors(self, data: Any) -> Any:
        return self.validator.iter_errors(data)


def canonical(content: str) -> str:
    return orjson.dumps(orjson.loads(content), option=orjson.OPT_SORT_KEYS).decode()


def validate(parsed: Any, data: Any) -> list[str]:
    errors = []
    for error in parsed.iter_errors(data):
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        errors.append(f"{where}: {error.message}")
        if len(errors) >= _MAX_ERRORS:
            break
    return errors


def reader_rejections(reader: Any, writer: Any) -> list[dict[str, str]]:
    """Violations: ways a document valid under writer can be invalid under reader.

    Local references (``#/$defs/...``, ``#/definitions/...``, any JSON pointer into the
    same document) are followed, so a renamed or moved definition is compared by what
    it says; other references (remote URLs, anchors) are compared by their text. The
    rules and their names follow the reference registries' JSON Schema compatibility
    (service/README.md, "Compatibility rules")."""
    refs = (getattr(reader, "_registry_refs", {}), getattr(writer, "_registry_refs", {}))
    if reader.schema == writer.schema and refs[0] == refs[1]:
        return []
    # Two equal nodes are equal in meaning when no $ref in them can point to different
    # content: no references, or only into definitions both documents hold alike.
    found = _REF.findall(orjson.dumps(reader.schema) + orjson.dumps(writer.schema))
    plain = not found or (
        all(r.startswith((b"#/definitions/", b"#/$defs/")) for r in found)
        and isinstance(reader.schema, dict)
        and isinstance(writer.schema, dict)
        and all(reader.schema.get(k) == writer.schema.get(k) for k in ("definitions", "$defs"))
    )
    token = _CONTEXT.set((reader.schema, writer.schema, set(), plain, refs))
    keywords = _KEYWORDS.set((_known_keywords(reader), _known_keywords(writer)))
    try:
        return _compare(reader.schema, writer.schema, "")
    finally:
        _KEYWORDS.reset(keywords)
        _CONTEXT.reset(token)


def _known_keywords(parsed: Any) -> frozenset[str]:
    """The keywords the draft of a parsed schema validates with (plus those another
    keyword reads: then/else by if, min/maxContains by contains in 2019-09 and later,
    draft-04's boolean exclusiveMinimum/Maximum by minimum/maximum)."""
    names = set(type(getattr(parsed, "validator", parsed)).VALIDATORS) | {"then", "else"}
    if "unevaluatedItems" in names:
        names |= {"minContains", "maxContains"}
    if "const" not in names:
        names |= {"exclusiveMinimum", "exclusiveMaximum"}
    return frozenset(names)


def _pointer(root: Any, ref: str) -> Any:
    """The node a local ``#/...`` reference points to, or None."""
    node = root
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _follow(node: Any, root: Any, refs: dict | None = None) -> tuple[Any, str]:
    """Follows local $ref chains, and references to registered schemas by their name
    (refs: name -> document); keywords next to a $ref still apply (2019-09 and later),
    so they are kept. Returns the node and the last reference followed."""
    followed = ""
    for _ in range(_MAX_REF_CHAIN):
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not isinstance(ref, str):
            break
        base, _hash, fragment = ref.partition("#")
        if base and refs and base in refs:
            target = _pointer(refs[base], f"#{fragment}") if fragment else refs[base]
        elif ref == "#" or ref.startswith("#/"):
            target = _pointer(root, ref)
        else:
            break
        if not isinstance(target, dict | bool):
            break
        followed = ref
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if target is False:  # refers to "nothing is valid": siblings cannot widen it
            node = False
        elif target is True:
            node = siblings or True
        else:
            node = {**target, **siblings}
    return node, followed


# Keywords that say nothing about which documents are valid.
_ANNOTATIONS = frozenset(
    (
        "title",
        "description",
        "$comment",
        "examples",
        "default",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$id",
        "id",
        "$schema",
        "$anchor",
        "$dynamicAnchor",
        "$defs",
        "definitions",
        "$vocabulary",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
    )
)
_SUMS = ("anyOf", "oneOf")
# Size bounds: keyword -> the instance type it applies to.
_SIZE_LOWER = {
    "minLength": "string",
    "minItems": "array",
    "minProperties": "object",
    "minContains": "array",
}
_SIZE_UPPER = {
    "maxLength": "string",
    "maxItems": "array",
    "maxProperties": "object",
    "maxContains": "array",
}
_VALUE_KEYS = frozenset(("enum", "const", "pattern", "format", "uniqueItems", "multipleOf"))
_BOUND_KEYS = frozenset(
    ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", *_SIZE_LOWER, *_SIZE_UPPER)
)
_OBJECT_KEYS = frozenset(
    (
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "propertyNames",
        "unevaluatedProperties",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
    )
)
_ARRAY_KEYS = frozenset(("items", "prefixItems", "additionalItems", "unevaluatedItems", "contains"))
_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def _types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        values = schema.get("enum") if "const" not in schema else [schema["const"]]
        if isinstance(values, list) and values:
            return {_JSON_TYPES.get(type(v), "object") for v in values}
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _covers(reader_types: set[str], writer_type: str) -> bool:
    return writer_type in reader_types or (writer_type == "integer" and "number" in reader_types)


def _applies(writer: dict, kind: str) -> bool:
    """Can a document valid under writer be of JSON type kind (so kind's keywords bite)?"""
    types = _types(writer)
    if types is None:
        return True
    return kind in types or (kind == "number" and "integer" in types)


def _empty(schema: Any) -> bool:
    """True for a schema that accepts everything (true, {} or only annotations)."""
    if schema is True:
        return True
    return isinstance(schema, dict) and all(k in _ANNOTATIONS for k in schema)


def _nothing(schema: Any) -> bool:
    """True for a schema under which no document is valid (false, {"not": {}})."""
    return schema is False or (
        isinstance(schema, dict) and "not" in schema and _empty(schema["not"])
    )


def _accepts_all(schema: Any) -> bool:
    """True for a schema under which every document is valid (true, {}, {"properties": {}})."""
    return _empty(schema) or not _compare(schema, True, "")


def _strip(schema: dict, known: frozenset[str] | None = None) -> dict:
    """Without annotations, and without keywords the draft does not know (known)."""
    if any(k in _ANNOTATIONS or (known is not None and k not in known) for k in schema):
        return {
            k: v
            for k, v in schema.items()
            if k not in _ANNOTATIONS and (known is None or k in known)
        }
    return schema


def _common_types(first: Any, second: Any) -> list[str]:
    """The JSON types two `type` values both allow (an integer is a number)."""
    mine = {first} if isinstance(first, str) else set(first)
    theirs = {second} if isinstance(second, str) else set(second)
    both = mine & theirs
    if ("integer" in mine and "number" in theirs) or ("number" in mine and "integer" in theirs):
        both.add("integer")
    return sorted(both)


def _merge(into: dict, other: Any) -> dict | bool:
    """allOf: one schema holding what both say (properties, required, types, bounds
    combined; disjoint types: false; for another keyword both hold, the first one's
    value stays)."""
    if other is True:
        return into
    if other is False:
        return False
    for key, value in other.items():
        if key not in into:
            into[key] = value
        elif key == "properties" and isinstance(value, dict):
            merged = dict(into[key])
            for name, schema in value.items():
                merged[name] = {"allOf": [merged[name], schema]} if name in merged else schema
            into[key] = merged
        elif key == "required" and isinstance(value, list):
            into[key] = sorted(set(into[key]) | set(value))
        elif key == "type":
            into[key] = _common_types(into[key], value)
        elif key in ("minimum", "exclusiveMinimum", *_SIZE_LOWER) and _number(value):
            into[key] = max(into[key], value) if _number(into[key]) else value
        elif key in ("maximum", "exclusiveMaximum", *_SIZE_UPPER) and _number(value):
            into[key] = min(into[key], value) if _number(into[key]) else value
        elif key == "enum" and isinstance(value, list):
            into[key] = [v for v in into[key] if v in value]
        elif key == "allOf":
            into[key] = [*into[key], *value]
    # Two disjoint types: no document has both, nothing is valid.
    return False if into.get("type") == [] else into


def _single_branch(schema: dict) -> dict:
    """anyOf/oneOf of one branch says what that branch says (exactly one of one is that
    one): it becomes an allOf branch, so a change of keyword around it is no change."""
    for key in _SUMS:
        branches = schema.get(key)
        if isinstance(branches, list) and len(branches) == 1:
            schema = {k: v for k, v in schema.items() if k != key}
            schema["allOf"] = [*schema.get("allOf", []), branches[0]]
    return schema


def _may_overlap(branches: list, root: Any) -> bool:
    """Can one document match two of these branches? Said no only when their declared
    JSON types are pairwise disjoint (integer is a number)."""
    seen: list[set[str] | None] = []
    for branch in branches:
        node, _ref = _follow(branch, root)
        types = _types(node) if isinstance(node, dict) else None
        if node is False:
            continue
        if types is not None and "integer" in types:
            types = types | {"number"}
        if types is not None and "number" in types:
            types = types | {"integer"}
        if any(other is None or types is None or other & types for other in seen):
            return True
        seen.append(types)
    return False


def _flatten(schema: dict, root: Any) -> dict | bool:
    """A schema with allOf as the one schema its branches and siblings make together."""
    flat: dict | bool = {k: v for k, v in schema.items() if k != "allOf"}
    pending = list(schema.get("allOf", []))
    for _ in range(256):
        if not pending or flat is False:
            break
        branch, _ref = _follow(pending.pop(0), root)
        if isinstance(branch, dict):
            pending.extend(branch.get("allOf", []))
            branch = {k: v for k, v in branch.items() if k != "allOf"}
        flat = _merge(flat, branch)
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _compare(reader: Any, writer: Any, path: str) -> list[dict[str, str]]:
    context = _CONTEXT.get(None)
    if context is None:
        return _compare_nodes(reader, writer, path, None, None)
    reader_root, writer_root, active, plain, (reader_refs, writer_refs) = context
    if plain and reader == writer:
        return []
    reader_node, writer_node = reader, writer
    reader, reader_ref = _follow(reader, reader_root, reader_refs)
    writer, writer_ref = _follow(writer, writer_root, writer_refs)
    if not (reader_ref or writer_ref):
        return _compare_nodes(reader, writer, path, reader_root, writer_root)
    # A side without a reference here is named by its node, which stays the same
    # object each time a recursion comes round again.
    pair = (reader_ref or f"@{id(reader_node)}", writer_ref or f"@{id(writer_node)}")
    if pair in active:
        return []
    active.add(pair)
    try:
        return _compare_nodes(reader, writer, path, reader_root, writer_root)
    finally:
        active.discard(pair)


def _compare_nodes(  # noqa: PLR0911, PLR0912 - one early answer per kind of node
    reader: Any, writer: Any, path: str, reader_root: Any, writer_root: Any
) -> list[dict[str, str]]:
    if _empty(reader) or _nothing(writer):
        return []
    if reader is False:
        return [violation("SCHEMA_CLOSED", path, "the reader accepts nothing here")]
    if writer is True:
        writer = {}
    if not isinstance(reader, dict) or not isinstance(writer, dict):
        return []
    reader_known, writer_known = _KEYWORDS.get((None, None))
    reader = _single_branch(_strip(reader, reader_known))
    writer = _single_branch(_strip(writer, writer_known))
    out: list[dict[str, str]] = []
    reader_sum = any(k in reader for k in _SUMS)
    writer_sum = any(k in writer for k in _SUMS)
    # Read by oneOf, what matches all branches of an allOf may match several of the
    # reader's at once, which oneOf refuses: unless those take disjoint JSON types.
    overlap = "allOf" in writer and "oneOf" in reader and not writer_sum
    if overlap and _may_overlap(reader["oneOf"], reader_root):
        out.append(
            violation(
                "COMBINED_TYPE_CHANGED", path, "allOf replaced by oneOf of overlapping branches"
            )
        )
    if "allOf" in writer:
        writer = _flatten(writer, writer_root)
        if writer is False:
            return []
        writer = _strip(writer, writer_known)
    if "allOf" in reader:
        reader = _flatten(reader, reader_root)
        if reader is False:
            return [*out, violation("SCHEMA_CLOSED", path, "the reader's allOf accepts nothing")]
        reader = _strip(reader, reader_known)
    branches = next((writer[k] for k in _SUMS if k in writer), None)
    if branches is not None and not reader_sum:
        # Every kind of document the writer allows must be readable.
        base = {k: v for k, v in writer.items() if k not in _SUMS}
        for branch in branches:
            combined = {"allOf": [base, branch]} if base else branch
            out.extend(_compare(reader, combined, path))
        return out
    # Only keywords of the reader can refuse anything: skip the families it does not use.
    keys = reader.keys()
    _compare_refs(reader, writer, path, out)
    _compare_types(reader, writer, path, out)
    if keys & _VALUE_KEYS:
        _compare_values(reader, writer, path, out)
    if keys & _BOUND_KEYS:
        _compare_bounds(reader, writer, path, out)
    _compare_not(reader, writer, path, out)
    if keys & _OBJECT_KEYS and _applies(writer, "object"):
        _compare_objects(reader, writer, path, out)
        _compare_dependencies(reader, writer, path, out)
    if keys & _ARRAY_KEYS and _applies(writer, "array"):
        _compare_arrays(reader, writer, path, out)
    _compare_conditionals(reader, writer, path, out)
    _compare_unions(reader, writer, path, out)
    return out


# References not followed here (remote, dynamic, recursive) are compared by their text.
_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _compare_refs(reader: dict, writer: dict, path: str, out: list) -> None:
    for key in _REF_KEYS:
        if key in reader and reader[key] != writer.get(key):
            out.append(violation("REF_CHANGED", path, f"{key} changed to {reader[key]}"))


def _compare_types(reader: dict, writer: dict, path: str, out: list) -> None:
    reader_types, writer_types = _types(reader), _types(writer)
    if reader_types is None:
        return
    if writer_types is None:
        out.append(violation("TYPE_NARROWED", path, f"type restricted to {sorted(reader_types)}"))
        return
    lost = [t for t in sorted(writer_types) if not _covers(reader_types, t)]
    overlap = len(lost) < len(writer_types) or ("number" in lost and "integer" in reader_types)
    if lost:
        out.append(
            violation(
                "TYPE_NARROWED" if overlap else "TYPE_CHANGED",
                path,
                f"type {', '.join(map(repr, lost))} no longer accepted"
                f" (now {sorted(reader_types)})",
            )
        )


def _multiple(value: float, step: float) -> bool:
    ratio = value / step
    return abs(ratio - round(ratio)) < 1e-9


# Zero-width constructs that look at the input: a pattern holding one may fail on some
# string even when it can match the empty one.
_LOOKS_AROUND = re.compile(r"[$^]|\\[bBAZzG\d]|\(\?[=!<]|\(\?P=")


@lru_cache(maxsize=256)
def _universal(pattern: str) -> bool:
    """Does pattern (searched, not anchored, as JSON Schema does) match every string?
    True when it matches the empty string without looking at the input: at position 0
    it then matches any string (`a*`, `^.*`)."""
    body = pattern.removeprefix("^")
    if _LOOKS_AROUND.search(body):
        return False
    try:
        return re.match(body, "") is not None
    except re.error:
        return False


def _compare_values(reader: dict, writer: dict, path: str, out: list) -> None:  # noqa: PLR0912
    if "enum" in reader:
        if "const" in writer:
            if writer["const"] not in reader["enum"]:
                out.append(violation("ENUM_NARROWED", path, "const value not in the new enum"))
        elif "enum" in writer:
            removed = [v for v in writer["enum"] if v not in reader["enum"]]
            if removed:
                out.append(violation("ENUM_NARROWED", path, f"enum values removed: {removed}"))
        else:
            out.append(violation("ENUM_NARROWED", path, "enum restriction added"))
    if "const" in reader:
        same = writer.get("const", object()) == reader["const"] or (
            "const" not in writer and writer.get("enum") == [reader["const"]]
        )
        if not same:
            out.append(violation("CONST_CHANGED", path, f"const set to {reader['const']!r}"))
    if _applies(writer, "string"):
        pattern = reader.get("pattern")
        changed = isinstance(pattern, str) and pattern != writer.get("pattern")
        if changed and not _universal(pattern):
            out.append(violation("PATTERN_CHANGED", path, f"pattern set to {reader['pattern']!r}"))
        if "format" in reader and reader["format"] != writer.get("format"):
            rule = "FORMAT_CHANGED" if "format" in writer else "FORMAT_ADDED"
            out.append(violation(rule, path, f"format set to {reader['format']!r}"))
    unique = reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True
    if unique and _applies(writer, "array"):
        out.append(violation("UNIQUE_ITEMS_ADDED", path, "items must now be unique"))
    if _applies(writer, "number") and _number(reader.get("multipleOf")):
        step, old = reader["multipleOf"], writer.get("multipleOf")
        if not _number(old) or not _multiple(old, step):
            out.append(violation("MULTIPLE_OF_CHANGED", path, f"multipleOf set to {step}"))


def _lower(schema: dict) -> tuple[float, bool] | None:
    """The lowest number allowed: (bound, exclusive), drafts 4 (boolean) and 6+ forms."""
    minimum, exclusive = schema.get("minimum"), schema.get("exclusiveMinimum")
    if isinstance(exclusive, bool):
        return (minimum, exclusive) if _number(minimum) else None
    found = [(minimum, False)] if _number(minimum) else []
    if _number(exclusive):
        found.append((exclusive, True))
    return max(found) if found else None


def _upper(schema: dict) -> tuple[float, bool] | None:
    maximum, exclusive = schema.get("maximum"), schema.get("exclusiveMaximum")
    if isinstance(exclusive, bool):
        return (maximum, exclusive) if _number(maximum) else None
    found = [(maximum, False)] if _number(maximum) else []
    if _number(exclusive):
        found.append((exclusive, True))
    return min(found, key=lambda b: (b[0], not b[1])) if found else None


def _compare_bounds(reader: dict, writer: dict, path: str, out: list) -> None:
    if _applies(writer, "number"):
        mine, theirs = _lower(reader), _lower(writer)
        if mine is not None and (
            theirs is None or mine[0] > theirs[0] or (mine[0] == theirs[0] and mine[1] > theirs[1])
        ):
            word = "exclusiveMinimum" if mine[1] else "minimum"
            out.append(violation("BOUND_NARROWED", path, f"{word} raised to {mine[0]}"))
        mine, theirs = _upper(reader), _upper(writer)
        if mine is not None and (
            theirs is None or mine[0] < theirs[0] or (mine[0] == theirs[0] and mine[1] > theirs[1])
        ):
            word = "exclusiveMaximum" if mine[1] else "maximum"
            out.append(violation("BOUND_NARROWED", path, f"{word} lowered to {mine[0]}"))
    for key, kind in _SIZE_LOWER.items():
        mine, theirs = reader.get(key), writer.get(key)
        floor = 1 if key == "minContains" else 0  # the value that restricts nothing
        raised = _number(mine) and mine > floor and not (_number(theirs) and theirs >= mine)
        if raised and _applies(writer, kind):
            out.append(violation("BOUND_NARROWED", path, f"{key} raised to {mine}"))
    for key, kind in _SIZE_UPPER.items():
        mine, theirs = reader.get(key), writer.get(key)
        lowered = _number(mine) and not (_number(theirs) and theirs <= mine)
        if lowered and _applies(writer, kind):
            out.append(violation("BOUND_NARROWED", path, f"{key} lowered to {mine}"))


def _compare_not(reader: dict, writer: dict, path: str, out: list) -> None:
    if "not" not in reader:
        return
    if "not" not in writer:
        out.append(violation("NOT_TYPE_EXTENDED", f"{path}/not", "'not' added: more is refused"))
    elif _compare(writer["not"], reader["not"], f"{path}/not"):
        # Reader refuses what matches reader.not: the writer must already refuse all of it.
        out.append(violation("NOT_TYPE_EXTENDED", f"{path}/not", "'not' now refuses more"))


def _openness(schema: dict) -> Any:
    """What a property not named in properties/patternProperties must match."""
    if "additionalProperties" in schema:
        return schema["additionalProperties"]
    return schema.get("unevaluatedProperties", True)


def _pattern_covers(schema: dict, name: str) -> list[tuple[str, Any]]:
    found = []
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        try:
            if re.search(pattern, name):
                found.append((pattern, sub))
        except re.error:
            continue
    return found


def _compare_objects(reader: dict, writer: dict, path: str, out: list) -> None:  # noqa: PLR0912
    reader_props = reader.get("properties") or {}
    writer_props = writer.get("properties") or {}
    reader_extra, writer_extra = _openness(reader), _openness(writer)
    writer_required = set(writer.get("required") or [])
    for name in sorted(set(reader.get("required") or []) - writer_required):
        out.append(
            violation("REQUIRED_ADDED", f"{path}/properties/{name}", f"{name!r} is now required")
        )
    for name in sorted(writer_props):
        where = f"{path}/properties/{name}"
        written = writer_props[name]
        covers = _pattern_covers(reader, name)
        if name in reader_props:
            out.extend(_compare(reader_props[name], written, where))
            for _pattern, sub in covers:
                out.extend(_compare(sub, written, where))
        elif covers:
            for pattern, sub in covers:
                if _compare(sub, written, where):
                    out.append(
                        violation(
                            "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                            where,
                            f"{name!r} removed and patternProperties {pattern!r} does not read it",
                        )
                    )
        elif reader_extra is False:
            if not _nothing(written):
                out.append(
                    violation("PROPERTY_REMOVED", where, f"{name!r} removed from a closed object")
                )
        elif not _empty(reader_extra) and _compare(reader_extra, written, where):
            out.append(
                violation(
                    "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    where,
                    f"{name!r} removed and additionalProperties does not read it",
                )
            )
    for name in sorted(set(reader_props) - set(writer_props)):
        where = f"{path}/properties/{name}"
        wanted = reader_props[name]
        if _accepts_all(wanted):
            continue
        covers = _pattern_covers(writer, name)
        if covers:
            if any(_compare(wanted, sub, where) for _pattern, sub in covers):
                out.append(
                    violation(
                        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        where,
                        f"{name!r} added: patternProperties of the writer allow other values",
                    )
                )
        elif _nothing(writer_extra):
            continue  # the writer never sends it (required: REQUIRED_ADDED above)
        elif _empty(writer_extra):
            out.append(
                violation(
                    "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    where,
                    f"{name!r} added with a schema: the open writer may send it with any value",
                )
            )
        elif _compare(wanted, writer_extra, where):
            out.append(
                violation(
                    "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    where,
                    f"{name!r} added: additionalProperties of the writer allow other values",
                )
            )
    _compare_patterns(reader, writer, path, out)
    _compare_extra(reader_extra, writer_extra, path, out)
    if "propertyNames" in reader:
        if "propertyNames" in writer:
            out.extend(
                _compare(reader["propertyNames"], writer["propertyNames"], f"{path}/propertyNames")
            )
        elif not _accepts_all(reader["propertyNames"]):
            out.append(
                violation("PROPERTY_NAMES_ADDED", f"{path}/propertyNames", "names now restricted")
            )


def _compare_patterns(reader: dict, writer: dict, path: str, out: list) -> None:
    reader_patterns = reader.get("patternProperties") or {}
    writer_patterns = writer.get("patternProperties") or {}
    writer_extra = _openness(writer)
    reader_extra = _openness(reader)
    for pattern, sub in reader_patterns.items():
        where = f"{path}/patternProperties/{pattern}"
        if pattern in writer_patterns:
            out.extend(_compare(sub, writer_patterns[pattern], where))
        elif _nothing(writer_extra) or _accepts_all(sub):
            continue
        elif _empty(writer_extra) or _compare(sub, writer_extra, where):
            out.append(
                violation(
                    "PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    where,
                    f"names matching {pattern!r} now need a schema the writer did not impose",
                )
            )
    for pattern, sub in writer_patterns.items():
        if pattern in reader_patterns or _nothing(sub):
            continue
        where = f"{path}/patternProperties/{pattern}"
        if reader_extra is False:
            out.append(
                violation(
                    "PATTERN_PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    where,
                    f"names matching {pattern!r} are no longer allowed",
                )
            )
        elif not _empty(reader_extra) and _compare(reader_extra, sub, where):
            out.append(
                violation(
                    "PATTERN_PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    where,
                    f"names matching {pattern!r} are not read by additionalProperties",
                )
            )


def _compare_extra(reader_extra: Any, writer_extra: Any, path: str, out: list) -> None:
    if reader_extra is False and not _nothing(writer_extra):
        out.append(
            violation(
                "ADDITIONAL_PROPERTIES_NARROWED", path, "additional properties no longer allowed"
            )
        )
    elif not _nothing(writer_extra) and not _accepts_all(reader_extra):
        if _empty(writer_extra):
            out.append(
                violation(
                    "ADDITIONAL_PROPERTIES_NARROWED",
                    f"{path}/additionalProperties",
                    "additional properties must now match a schema",
                )
            )
        else:
            out.extend(_compare(reader_extra, writer_extra, f"{path}/additionalProperties"))


def _dependencies(schema: dict) -> tuple[dict[str, list], dict[str, Any]]:
    arrays: dict[str, list] = {}
    schemas: dict[str, Any] = {}
    for key, value in (schema.get("dependencies") or {}).items():
        if isinstance(value, list):
            arrays[key] = value
        else:
            schemas[key] = value
    arrays.update(schema.get("dependentRequired") or {})
    schemas.update(schema.get("dependentSchemas") or {})
    return arrays, schemas


def _compare_dependencies(reader: dict, writer: dict, path: str, out: list) -> None:
    if not any(k in reader for k in ("dependencies", "dependentRequired", "dependentSchemas")):
        return
    reader_arrays, reader_schemas = _dependencies(reader)
    writer_arrays, writer_schemas = _dependencies(writer)
    always = set(writer.get("required") or [])
    for key, names in reader_arrays.items():
        where = f"{path}/dependencies/{key}"
        given = set(writer_arrays.get(key, [])) | always
        missing = sorted(set(names) - given)
        if missing:
            rule = "DEPENDENCY_ARRAY_EXTENDED" if key in writer_arrays else "DEPENDENCY_ARRAY_ADDED"
            out.append(violation(rule, where, f"with {key!r}, now also required: {missing}"))
    for key, sub in reader_schemas.items():
        where = f"{path}/dependencies/{key}"
        if key in writer_schemas:
            out.extend(_compare(sub, writer_schemas[key], where))
        elif not _empty(sub):
            out.append(
                violation("DEPENDENCY_SCHEMA_ADDED", where, f"with {key!r}, a schema applies")
            )


def _array_parts(schema: dict) -> tuple[list | None, Any, str]:
    """(positional item schemas or None, schema for the other items, its keyword)."""
    if "prefixItems" in schema:
        rest = schema.get("items", schema.get("unevaluatedItems", True))
        return schema["prefixItems"], rest, "items"
    items = schema.get("items")
    if isinstance(items, list):
        return (
            items,
            schema.get("additionalItems", schema.get("unevaluatedItems", True)),
            ("additionalItems"),
        )
    if items is None:
        return None, schema.get("unevaluatedItems", True), "items"
    return None, items, "items"


def _compare_arrays(reader: dict, writer: dict, path: str, out: list) -> None:  # noqa: PLR0912
    keys = ("items", "prefixItems", "additionalItems", "unevaluatedItems", "contains")
    if not any(k in reader for k in keys):
        return
    reader_tuple, reader_rest, reader_key = _array_parts(reader)
    writer_tuple, writer_rest, _writer_key = _array_parts(writer)
    tuple_key = "prefixItems" if "prefixItems" in reader else "items"
    positions = max(len(reader_tuple or []), len(writer_tuple or []))
    for index in range(positions):
        where = f"{path}/{tuple_key}/{index}"
        in_reader = reader_tuple is not None and index < len(reader_tuple)
        in_writer = writer_tuple is not None and index < len(writer_tuple)
        mine = reader_tuple[index] if in_reader else reader_rest
        theirs = writer_tuple[index] if in_writer else writer_rest
        if in_reader and in_writer:
            out.extend(_compare(mine, theirs, where))
        elif in_writer:  # the reader reads this position with its rest schema
            if mine is False and not _nothing(theirs):
                out.append(
                    violation("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL", where, "item removed")
                )
            elif not _empty(mine) and _compare(mine, theirs, where):
                out.append(
                    violation(
                        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        where,
                        "item removed and the reader's other-items schema does not read it",
                    )
                )
        elif _nothing(theirs) or _accepts_all(mine):
            continue
        elif _empty(theirs):
            out.append(
                violation(
                    "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
                    where,
                    "positional item added: the open writer may send any value there",
                )
            )
        elif _compare(mine, theirs, where):
            out.append(
                violation(
                    "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    where,
                    "positional item added: the writer's other items may not match it",
                )
            )
    where = f"{path}/{reader_key}"
    if reader_rest is False and not _nothing(writer_rest):
        out.append(violation("ADDITIONAL_ITEMS_NARROWED", where, "further items not allowed"))
    elif not _nothing(writer_rest) and not _accepts_all(reader_rest):
        if _empty(writer_rest):
            rule = "ADDITIONAL_ITEMS_NARROWED" if reader_tuple is not None else "ITEMS_ADDED"
            out.append(violation(rule, where, "items must now match a schema"))
        else:
            out.extend(_compare(reader_rest, writer_rest, where))
    if "contains" in reader and not _accepts_all(reader["contains"]):
        if "contains" in writer:
            out.extend(_compare(reader["contains"], writer["contains"], f"{path}/contains"))
        elif reader.get("minContains") != 0:
            out.append(violation("CONTAINS_ADDED", f"{path}/contains", "an item must now match"))


def _compare_conditionals(reader: dict, writer: dict, path: str, out: list) -> None:
    if "if" not in reader or ("then" not in reader and "else" not in reader):
        return
    same_if = "if" in writer and writer["if"] == reader["if"]
    for branch in ("then", "else"):
        if branch not in reader:
            continue
        where = f"{path}/{branch}"
        theirs = writer.get(branch, True) if same_if else writer
        out.extend(_compare(reader[branch], theirs, where))


def _compare_unions(reader: dict, writer: dict, path: str, out: list) -> None:
    for keyword in _SUMS:
        if keyword not in reader:
            continue
        writer_branches = next((writer[k] for k in _SUMS if k in writer), None)
        base = {k: v for k, v in writer.items() if k not in _SUMS}
        if writer_branches is None:
            declared = base.get("type")
            writer_branches = (
                [{**base, "type": t} for t in declared]
                if isinstance(declared, list) and len(declared) > 1
                else [base]
            )
        elif base:
            writer_branches = [{"allOf": [base, branch]} for branch in writer_branches]
        for index, branch in enumerate(writer_branches):
            if all(_compare(option, branch, path) for option in reader[keyword]):
                out.append(
                    violation(
                        "UNION_NARROWED",
                        f"{path}/{keyword}",
                        f"branch {index} of the old schema matches no branch of the new one",
                    )
                )
