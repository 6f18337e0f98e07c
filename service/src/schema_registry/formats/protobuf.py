"""Protobuf: syntax check with proto-schema-parser; wire compatibility by field numbers.

Type names are resolved the way protoc does (nested scopes outward, the package, a
leading dot for a full name), so `Status` and `.pkg.Msg.Status` are one type. Fields
inside `oneof` and `map<,>` fields are compared too, and a type change is refused only
when the wire format differs (protobuf's "Updating A Message Type" groups).

Data validation is not offered for Protobuf (the registry holds .proto text, not
compiled descriptors); the API answers such requests with 422 UNSUPPORTED_OPERATION.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from antlr4.error.ErrorListener import ErrorListener
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from schema_registry.errors import InvalidSchemaError
from schema_registry.formats import violation


class _RaisingListener(ErrorListener):
    """Turns the first ANTLR syntax error into an exception instead of a stderr line."""

    # ANTLR's callback signature, fixed by the library.
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: PLR0917
        raise InvalidSchemaError(f"invalid Protobuf at line {line}:{column}: {msg}")


def _strict(component: Any) -> None:
    component.removeErrorListeners()
    component.addErrorListener(_RaisingListener())


_PARSER = Parser(setup_lexer=_strict, setup_parser=_strict)


def parse(content: str) -> ast.File:
    if not content.strip():
        raise InvalidSchemaError("invalid Protobuf: empty document")
    try:
        return _PARSER.parse(content)
    except InvalidSchemaError:
        raise
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        raise InvalidSchemaError(f"invalid Protobuf: {exc}") from exc


def canonical(content: str) -> str:
    return content.strip() + "\n"


def validate(parsed: ast.File, data: Any) -> list[str]:
    raise NotImplementedError("data validation is not available for Protobuf schemas")


_VARINT = frozenset(("int32", "uint32", "int64", "uint64", "bool"))
# Types that read each other's bytes on the wire (protobuf language guide, "Updating A
# Message Type"): varints, zigzag varints, 32-bit, 64-bit, length-delimited text.
_WIRE_GROUPS = (_VARINT, {"sint32", "sint64"}, {"fixed32", "sfixed32"}, {"fixed64", "sfixed64"})
_SCALARS = frozenset(
    (
        *_VARINT,
        "sint32",
        "sint64",
        "fixed32",
        "sfixed32",
        "fixed64",
        "sfixed64",
        "float",
        "double",
        "string",
        "bytes",
    )
)
_NUMERIC = _SCALARS - {"string", "bytes"}


@dataclass(frozen=True)
class _Field:
    name: str
    type: str  # a scalar name, or a resolved ".pkg.Message" / ".pkg.Enum"
    label: str  # "", "optional", "repeated", "required"
    oneof: str | None = None
    map: tuple[str, str] | None = None


@dataclass
class _Schema:
    package: str = ""
    messages: dict[str, dict[int, _Field]] = field(default_factory=dict)
    enums: set[str] = field(default_factory=set)
    oneofs: dict[str, dict[str, set[int]]] = field(default_factory=dict)


def _label(cardinality: Any) -> str:
    return str(cardinality).rsplit(".", 1)[-1].lower() if cardinality is not None else ""


def _collect_names(elements: list, scope: str, schema: _Schema, pending: list) -> None:
    for element in elements:
        if isinstance(element, ast.Message):
            name = f"{scope}.{element.name}"
            schema.messages[name] = {}
            pending.append((name, element))
            _collect_names(element.elements, name, schema, pending)
        elif isinstance(element, ast.Enum):
            schema.enums.add(f"{scope}.{element.name}")


def _resolve(name: str, scope: str, schema: _Schema) -> str:
    """The full name protoc would bind `name` to from inside `scope`."""
    if name in _SCALARS:
        return name
    if name.startswith("."):
        return name
    first = name.split(".", 1)[0]
    here = scope
    while True:
        candidate = f"{here}.{first}"
        if candidate in schema.messages or candidate in schema.enums:
            return f"{here}.{name}"
        if not here:
            break
        here = here.rsplit(".", 1)[0] if "." in here else ""
    # Not defined in this file (an import): the full name it would have in the package.
    return f".{name}" if "." in name else (f".{schema.package}.{name}".replace("..", "."))


def _model(document: ast.File) -> _Schema:
    schema = _Schema()
    for element in document.file_elements:
        if isinstance(element, ast.Package):
            schema.package = element.name
    root = f".{schema.package}" if schema.package else ""
    pending: list = []
    _collect_names(document.file_elements, root, schema, pending)
    for name, message in pending:
        fields = schema.messages[name]
        groups: dict[str, set[int]] = {}
        for element in message.elements:
            if isinstance(element, ast.Field):
                fields[element.number] = _Field(
                    element.name, _resolve(element.type, name, schema), _label(element.cardinality)
                )
            elif isinstance(element, ast.MapField):
                key = _resolve(element.key_type, name, schema)
                value = _resolve(element.value_type, name, schema)
                fields[element.number] = _Field(
                    element.name, f"map<{key},{value}>", "repeated", map=(key, value)
                )
            elif isinstance(element, ast.OneOf):
                numbers = groups.setdefault(element.name, set())
                for member in element.elements:
                    if isinstance(member, ast.Field):
                        numbers.add(member.number)
                        fields[member.number] = _Field(
                            member.name,
                            _resolve(member.type, name, schema),
                            "",
                            oneof=element.name,
                        )
        schema.oneofs[name] = groups
    return schema


def _models(document: ast.File) -> _Schema:
    cached = getattr(document, "_registry_model", None)
    if cached is None:
        cached = _model(document)
        object.__setattr__(document, "_registry_model", cached)
    return cached


def _wire_compatible(reader: str, writer: str, reader_schema: _Schema, writer_schema: _Schema):
    if reader == writer:
        return True
    if any(reader in group and writer in group for group in _WIRE_GROUPS):
        return True
    if {reader, writer} == {"string", "bytes"}:
        return True
    # An enum is a varint on the wire: it reads (and is read as) the int types.
    reader_enum = reader in reader_schema.enums
    writer_enum = writer in writer_schema.enums
    return (reader_enum and writer in _VARINT - {"bool"}) or (
        writer_enum and reader in _VARINT - {"bool"}
    )


def reader_rejections(reader: ast.File, writer: ast.File) -> list[dict[str, str]]:
    """What data written with writer the reader cannot read, by field number."""
    out: list[dict[str, str]] = []
    mine, theirs = _models(reader), _models(writer)
    if mine.package != theirs.package:
        out.append(
            violation("PACKAGE_CHANGED", "/", f"package {theirs.package!r} became {mine.package!r}")
        )
        return out
    for message, writer_fields in theirs.messages.items():
        reader_fields = mine.messages.get(message)
        where_message = f"/{message.lstrip('.')}"
        if reader_fields is None:
            out.append(violation("MESSAGE_REMOVED", where_message, f"{message} removed"))
            continue
        for number, wfield in sorted(writer_fields.items()):
            rfield = reader_fields.get(number)
            where = f"{where_message}/{number}"
            if rfield is None:
                if wfield.oneof is not None:
                    out.append(
                        violation(
                            "ONEOF_FIELD_REMOVED",
                            where,
                            f"{wfield.name} left oneof {wfield.oneof}: data setting only it "
                            "has no member of the oneof for the reader",
                        )
                    )
                continue
            _compare_field(rfield, wfield, where, (mine, theirs), out)
        for number, rfield in sorted(reader_fields.items()):
            if number not in writer_fields and rfield.label == "required":
                out.append(
                    violation("REQUIRED_ADDED", f"{where_message}/{number}", "required field added")
                )
        _compare_oneofs(message, mine, theirs, where_message, out)
    return out


def _compare_field(
    rfield: _Field, wfield: _Field, where: str, schemas: tuple[_Schema, _Schema], out: list
) -> None:
    mine, theirs = schemas
    if (rfield.map is None) != (wfield.map is None):
        out.append(violation("FIELD_KIND_CHANGED", where, f"{wfield.type} became {rfield.type}"))
        return
    if rfield.map is not None and wfield.map is not None:
        if rfield.map[0] != wfield.map[0]:
            out.append(
                violation("MAP_KEY_CHANGED", where, f"map key {wfield.map[0]} -> {rfield.map[0]}")
            )
        if not _wire_compatible(rfield.map[1], wfield.map[1], mine, theirs):
            out.append(
                violation(
                    "MAP_VALUE_CHANGED", where, f"map value {wfield.map[1]} -> {rfield.map[1]}"
                )
            )
        return
    if not _wire_compatible(rfield.type, wfield.type, mine, theirs):
        out.append(
            violation(
                "FIELD_TYPE_CHANGED",
                where,
                f"field {wfield.name} changed type {wfield.type} -> {rfield.type}",
            )
        )
    reader_repeated = rfield.label == "repeated"
    writer_repeated = wfield.label == "repeated"
    if writer_repeated and not reader_repeated and rfield.type in _NUMERIC | mine.enums:
        # Packed repeated numbers are not read by a singular numeric field.
        out.append(
            violation(
                "FIELD_NUMERIC_LABEL_CHANGED", where, f"repeated {wfield.name} became singular"
            )
        )
    if rfield.label == "required" and wfield.label != "required":
        out.append(violation("REQUIRED_ADDED", where, f"{rfield.name} became required"))


def _compare_oneofs(message: str, mine: _Schema, theirs: _Schema, where: str, out: list) -> None:
    writer_fields = theirs.messages[message]
    writer_groups = theirs.oneofs.get(message, {})
    for group, numbers in mine.oneofs.get(message, {}).items():
        moved = sorted(n for n in numbers if n in writer_fields and writer_fields[n].oneof != group)
        if not moved:
            continue
        if group in writer_groups:
            out.append(
                violation(
                    "FIELD_MOVED_TO_EXISTING_ONEOF",
                    f"{where}/{moved[0]}",
                    f"fields {moved} moved into the existing oneof {group}",
                )
            )
        elif len(moved) > 1:
            out.append(
                violation(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    f"{where}/{moved[0]}",
                    f"fields {moved} moved into one new oneof {group}: data may set several",
                )
            )
