"""Schema formats: each parses, validates data, and lists what a reader rejects of a writer.

A format module exposes:
- parse(content: str) -> parsed object (raises InvalidSchemaError with the parser's reason)
- canonical(content: str) -> the text stored and hashed
- validate(parsed, data) -> list of error strings (empty: valid)
- reader_rejections(reader, writer) -> list of violations: what data written with the
  writer schema the reader schema cannot read
"""

from __future__ import annotations

from types import ModuleType


def violation(rule: str, path: str, message: str) -> dict[str, str]:
    """One compatibility violation: a named rule, the JSON path it is at, and why."""
    return {"rule": rule, "path": path or "/", "message": message}


# The format modules use violation() above: import them after it is defined.
from schema_registry.formats import avro, json_schema, protobuf  # noqa: E402

FORMATS: dict[str, ModuleType] = {
    "JSON": json_schema,
    "AVRO": avro,
    "PROTOBUF": protobuf,
}

# Names clients send in schema_type, mapped to the stored format.
FORMAT_ALIASES = {
    "json": "JSON",
    "jsonschema": "JSON",
    "json_schema": "JSON",
    "avro": "AVRO",
    "protobuf": "PROTOBUF",
    "proto": "PROTOBUF",
}
