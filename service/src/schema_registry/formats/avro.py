"""Avro: parse with fastavro, validate data, and the Avro schema-resolution rules.

Compatibility follows the Avro specification's "Schema Resolution": a reader can read
writer data when types match or promote (int->long/float/double, long->float/double,
float->double, string<->bytes), every reader record field the writer lacks has a
default, writer enum symbols exist in the reader (or the reader has a default), and
every writer union branch is readable.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastavro.schema import SchemaParseException, UnknownType, parse_schema
from fastavro.validation import ValidationError
from fastavro.validation import validate as fastavro_validate

from schema_registry.errors import InvalidSchemaError
from schema_registry.formats import violation

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}
_NAMED = ("record", "error", "enum", "fixed")


class ParsedAvro:
    """A parsed Avro schema plus the table of its named types."""

    def __init__(self, parsed: Any) -> None:
        self.parsed = parsed
        self.names: dict[str, Any] = {}
        self._collect(parsed)

    def _collect(self, schema: Any) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in _NAMED and "name" in schema:
                self.names[schema["name"]] = schema
            if kind in ("record", "error") and not isinstance(schema.get("fields"), list):
                raise InvalidSchemaError(
                    f"invalid Avro schema: record {schema.get('name')} needs a list of fields"
                )
            for field in schema.get("fields", []):
                self._collect(field["type"])
            for key in ("items", "values"):
                if key in schema:
                    self._collect(schema[key])

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema in self.names:
            return self.names[schema]
        return schema


def parse(content: str, references: tuple[tuple[str, str], ...] = ()) -> ParsedAvro:
    """references: (name, schema text) of registered schemas whose named types this one
    uses (they are inlined, so validation and compatibility see what they say)."""
    try:
        document = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise InvalidSchemaError(f"schema is not valid JSON: {exc}") from exc
    _require_fields(document)
    try:
        if references:
            named: dict[str, Any] = {}
            for _name, text in references:
                parse_schema(orjson.loads(text), named_schemas=named, _write_hint=False)
            return ParsedAvro(
                parse_schema(document, named_schemas=named, expand=True, _write_hint=False)
            )
        return ParsedAvro(parse_schema(document, _write_hint=False))
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError) as exc:
        raise InvalidSchemaError(f"invalid Avro schema: {exc}") from exc


def _require_fields(schema: Any) -> None:
    """fastavro fills in a missing "fields" list; the Avro spec requires one."""
    if isinstance(schema, list):
        for branch in schema:
            _require_fields(branch)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "error"):
            fields = schema.get("fields")
            if not isinstance(fields, list):
                raise InvalidSchemaError(
                    f"invalid Avro schema: record {schema.get('name')!r} needs a list of fields"
                )
            for field in fields:
                if isinstance(field, dict):
                    _require_fields(field.get("type"))
        for key in ("items", "values", "type"):
            if isinstance(schema.get(key), dict | list):
                _require_fields(schema[key])


def canonical(content: str) -> str:
    return orjson.dumps(orjson.loads(content), option=orjson.OPT_SORT_KEYS).decode()


def validate(parsed: ParsedAvro, data: Any) -> list[str]:
    try:
        fastavro_validate(data, parsed.parsed, raise_errors=True, strict=True)
    except ValidationError as exc:
        return [str(error) for error in exc.errors] or [str(exc)]
    except (TypeError, ValueError, AttributeError) as exc:
        return [f"data does not match the schema: {exc}"]
    return []


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return schema["type"] if isinstance(schema["type"], str) else _kind(schema["type"])
    return schema


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def reader_rejections(reader: ParsedAvro, writer: ParsedAvro) -> list[dict[str, str]]:
    resolver = _Resolver(reader, writer)
    resolver.match(reader.parsed, writer.parsed, "", frozenset())
    return resolver.out


class _Resolver:
    """Walks reader and writer schemas side by side, collecting violations."""

    def __init__(self, reader: ParsedAvro, writer: ParsedAvro) -> None:
        self.reader = reader
        self.writer = writer
        self.out: list[dict[str, str]] = []

    def match(self, rschema: Any, wschema: Any, path: str, seen: frozenset) -> None:
        rschema, wschema = self.reader.resolve(rschema), self.writer.resolve(wschema)
        key = (id(rschema), id(wschema))
        if key in seen:
            return  # recursive types: this pair is already being checked
        seen = seen | {key}
        rkind, wkind = _kind(rschema), _kind(wschema)
        if wkind == "union":
            for index, branch in enumerate(wschema):
                self.match(rschema, branch, f"{path}/union[{index}]", seen)
        elif rkind == "union":
            self._match_reader_union(rschema, wschema, wkind, path, seen)
        elif wkind in _PROMOTIONS or wkind in ("null", "boolean", "double"):
            if rkind != wkind and rkind not in _PROMOTIONS.get(wkind, set()):
                self._add("TYPE_MISMATCH", path, f"{wkind} cannot be read as {rkind}")
        elif rkind != wkind and {rkind, wkind} != {"record", "error"}:
            self._add("TYPE_MISMATCH", path, f"{wkind} cannot be read as {rkind}")
        elif wkind in _NAMED and not self._same_name(rschema, wschema):
            self._add(
                "NAME_MISMATCH", path, f"{wschema['name']} cannot be read as {rschema['name']}"
            )
        else:
            self._match_complex(rschema, wschema, wkind, path, seen)

    def _add(self, rule: str, path: str, message: str) -> None:
        self.out.append(violation(rule, path, message))

    @staticmethod
    def _same_name(rschema: dict, wschema: dict) -> bool:
        aliases = {_short(a) for a in rschema.get("aliases", [])}
        writer_name = _short(wschema["name"])
        return _short(rschema["name"]) == writer_name or writer_name in aliases

    def _match_reader_union(
        self, rschema: list, wschema: Any, wkind: str, path: str, seen: frozenset
    ) -> None:
        for branch in rschema:
            probe = _Resolver(self.reader, self.writer)
            probe.match(branch, wschema, path, seen)
            if not probe.out:
                return
        self._add("UNION_NO_MATCH", path, f"no branch of the reader reads {wkind}")

    def _match_complex(
        self, rschema: dict, wschema: dict, wkind: str, path: str, seen: frozenset
    ) -> None:
        if wkind in ("record", "error"):
            self._match_record(rschema, wschema, path, seen)
        elif wkind == "enum":
            missing = [s for s in wschema["symbols"] if s not in rschema["symbols"]]
            if missing and "default" not in rschema:
                self._add("ENUM_SYMBOL_MISSING", path, f"symbols removed: {missing}")
        elif wkind == "fixed":
            if rschema["size"] != wschema["size"]:
                self._add("FIXED_SIZE_CHANGED", path, "fixed size differs")
        elif wkind == "array":
            self.match(rschema["items"], wschema["items"], f"{path}/items", seen)
        elif wkind == "map":
            self.match(rschema["values"], wschema["values"], f"{path}/values", seen)

    def _match_record(self, rschema: dict, wschema: dict, path: str, seen: frozenset) -> None:
        writer_fields = {f["name"]: f for f in wschema["fields"]}
        for field in rschema["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            where = f"{path}/fields/{field['name']}"
            if match is not None:
                self.match(field["type"], match["type"], where, seen)
            elif "default" not in field:
                self._add(
                    "READER_FIELD_MISSING_DEFAULT",
                    where,
                    f"field {field['name']!r} has no default and the writer lacks it",
                )
