"""JSON Schema: parse and check with the draft the schema names, validate, compatibility."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote

import jsonschema
import orjson
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from schema_registry.errors import InvalidSchemaError

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_MAX_ERRORS = 50
_MAX_REF_CHAIN = 32

# The two documents being compared and the $ref pairs under comparison right now
# (a pair met again inside itself is a recursive schema: assumed equal, which ends it).
_Active = set[tuple[str, str]]
_CONTEXT: ContextVar[tuple[Any, Any, _Active]] = ContextVar("json_schema_compare")


def _violation(rule: str, path: str, message: str) -> dict[str, str]:
    return {"rule": rule, "path": path or "/", "message": message}


def parse(content: str) -> Any:
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidSchemaError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(document, dict | bool):
        raise InvalidSchemaError("a JSON Schema must be an object or a boolean")
    cls = validator_for(document, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(document)
    except SchemaError as exc:
        where = "/" + "/".join(str(p) for p in exc.absolute_path)
        raise InvalidSchemaError(f"invalid JSON Schema at {where}: {exc.message}") from exc
    return cls(document, format_checker=cls.FORMAT_CHECKER)


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
    it says; other references (remote URLs, anchors) are compared by their text."""
    token = _CONTEXT.set((reader.schema, writer.schema, set()))
    try:
        return _compare(reader.schema, writer.schema, "")
    finally:
        _CONTEXT.reset(token)


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


def _follow(node: Any, root: Any) -> tuple[Any, str]:
    """Follows local $ref chains; keywords next to a $ref still apply (2019-09 and
    later), so they are kept. Returns the node and the last reference followed."""
    followed = ""
    for _ in range(_MAX_REF_CHAIN):
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            break
        target = _pointer(root, ref)
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


def _types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _covers(reader_types: set[str], writer_type: str) -> bool:
    return writer_type in reader_types or (writer_type == "integer" and "number" in reader_types)


def _compare(reader: Any, writer: Any, path: str) -> list[dict[str, str]]:
    context = _CONTEXT.get(None)
    if context is None:
        return _compare_nodes(reader, writer, path)
    reader_root, writer_root, active = context
    reader_node, writer_node = reader, writer
    reader, reader_ref = _follow(reader, reader_root)
    writer, writer_ref = _follow(writer, writer_root)
    if not (reader_ref or writer_ref):
        return _compare_nodes(reader, writer, path)
    # A side without a reference here is named by its node, which stays the same
    # object each time a recursion comes round again.
    pair = (reader_ref or f"@{id(reader_node)}", writer_ref or f"@{id(writer_node)}")
    if pair in active:
        return []
    active.add(pair)
    try:
        return _compare_nodes(reader, writer, path)
    finally:
        active.discard(pair)


def _compare_nodes(reader: Any, writer: Any, path: str) -> list[dict[str, str]]:
    if reader is True or reader == {}:
        return []
    if writer is False:
        return []
    if reader is False:
        return [_violation("SCHEMA_CLOSED", path, "the reader accepts nothing here")]
    if writer is True:
        writer = {}
    if reader == writer:
        return []
    out: list[dict[str, str]] = []
    _compare_refs(reader, writer, path, out)
    _compare_types(reader, writer, path, out)
    _compare_values(reader, writer, path, out)
    _compare_bounds(reader, writer, path, out)
    _compare_objects(reader, writer, path, out)
    _compare_arrays(reader, writer, path, out)
    _compare_unions(reader, writer, path, out)
    return out


def _compare_refs(reader: dict, writer: dict, path: str, out: list) -> None:
    if "$ref" in reader and reader.get("$ref") != writer.get("$ref"):
        out.append(_violation("REF_CHANGED", path, f"reference changed to {reader['$ref']}"))


def _compare_types(reader: dict, writer: dict, path: str, out: list) -> None:
    reader_types, writer_types = _types(reader), _types(writer)
    if reader_types is None:
        return
    if writer_types is None:
        out.append(_violation("TYPE_NARROWED", path, f"type restricted to {sorted(reader_types)}"))
        return
    for writer_type in sorted(writer_types):
        if not _covers(reader_types, writer_type):
            out.append(
                _violation(
                    "TYPE_NARROWED",
                    path,
                    f"type {writer_type!r} no longer accepted (now {sorted(reader_types)})",
                )
            )


def _compare_values(reader: dict, writer: dict, path: str, out: list) -> None:
    if "enum" in reader:
        if "enum" in writer:
            removed = [v for v in writer["enum"] if v not in reader["enum"]]
            if removed:
                out.append(_violation("ENUM_NARROWED", path, f"enum values removed: {removed}"))
        elif "const" in writer:
            if writer["const"] not in reader["enum"]:
                out.append(_violation("ENUM_NARROWED", path, "const value not in the new enum"))
        else:
            out.append(_violation("ENUM_NARROWED", path, "enum restriction added"))
    if "const" in reader and writer.get("const", object()) != reader["const"]:
        out.append(_violation("CONST_CHANGED", path, f"const set to {reader['const']!r}"))
    if "pattern" in reader and reader["pattern"] != writer.get("pattern"):
        out.append(_violation("PATTERN_CHANGED", path, f"pattern set to {reader['pattern']!r}"))
    if reader.get("uniqueItems") is True and writer.get("uniqueItems") is not True:
        out.append(_violation("UNIQUE_ITEMS_ADDED", path, "items must now be unique"))
    if "multipleOf" in reader:
        step, old = reader["multipleOf"], writer.get("multipleOf")
        if old is None or old % step != 0:
            out.append(_violation("MULTIPLE_OF_CHANGED", path, f"multipleOf set to {step}"))


def _compare_bounds(reader: dict, writer: dict, path: str, out: list) -> None:
    for key in _LOWER_BOUNDS:
        if key in reader and (key not in writer or reader[key] > writer[key]):
            out.append(_violation("BOUND_NARROWED", path, f"{key} raised to {reader[key]}"))
    for key in _UPPER_BOUNDS:
        if key in reader and (key not in writer or reader[key] < writer[key]):
            out.append(_violation("BOUND_NARROWED", path, f"{key} lowered to {reader[key]}"))


def _compare_objects(reader: dict, writer: dict, path: str, out: list) -> None:
    reader_required = set(reader.get("required", []))
    writer_required = set(writer.get("required", []))
    for name in sorted(reader_required - writer_required):
        out.append(
            _violation("REQUIRED_ADDED", f"{path}/properties/{name}", f"{name!r} is now required")
        )
    reader_props = reader.get("properties", {})
    writer_props = writer.get("properties", {})
    reader_extra = reader.get("additionalProperties", True)
    writer_extra = writer.get("additionalProperties", True)
    for name in sorted(writer_props):
        where = f"{path}/properties/{name}"
        if name in reader_props:
            out.extend(_compare(reader_props[name], writer_props[name], where))
        elif reader_extra is False:
            out.append(
                _violation("PROPERTY_REMOVED", where, f"{name!r} removed from a closed object")
            )
        elif isinstance(reader_extra, dict):
            out.extend(_compare(reader_extra, writer_props[name], where))
    if reader_extra is False and writer_extra is not False:
        out.append(
            _violation(
                "ADDITIONAL_PROPERTIES_NARROWED", path, "additional properties no longer allowed"
            )
        )
    elif isinstance(reader_extra, dict) and writer_extra is not False:
        writer_extra_schema = {} if writer_extra is True else writer_extra
        out.extend(_compare(reader_extra, writer_extra_schema, f"{path}/additionalProperties"))


def _compare_arrays(reader: dict, writer: dict, path: str, out: list) -> None:
    reader_items = reader.get("items")
    if isinstance(reader_items, dict | bool):
        writer_items = writer.get("items", {})
        if isinstance(writer_items, dict | bool):
            out.extend(_compare(reader_items, writer_items, f"{path}/items"))


def _compare_unions(reader: dict, writer: dict, path: str, out: list) -> None:
    for keyword in ("anyOf", "oneOf"):
        if keyword not in reader:
            continue
        writer_branches = writer.get(keyword) or writer.get("anyOf") or writer.get("oneOf")
        if not writer_branches:
            writer_branches = [{k: v for k, v in writer.items() if k not in ("anyOf", "oneOf")}]
        for index, branch in enumerate(writer_branches):
            if all(_compare(option, branch, path) for option in reader[keyword]):
                out.append(
                    _violation(
                        "UNION_NARROWED",
                        f"{path}/{keyword}",
                        f"branch {index} of the old schema matches no branch of the new one",
                    )
                )
