"""Protobuf: syntax check with proto-schema-parser; wire compatibility by field numbers.

Type names are resolved the way protoc does (nested scopes outward, the package, a
leading dot for a full name), so `Status` and `.pkg.Msg.Status` are one type, and then
compared relative to the package that defines them (a package change breaks nothing on
the wire; types of registered imports are compared field by field). Fields
inside `oneof` and `map<,>` fields are compared too, and a type change is refused only
when the wire format differs (protobuf's "Updating A Message Type" groups).

Data validation builds descriptors from the parsed file (the `protobuf` package) and
reads the JSON data with protobuf's JSON mapping into the file's first message.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any

from antlr4.error.ErrorListener import ErrorListener
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor_pb2 import FieldDescriptorProto as _FDP
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


def parse(content: str, references: tuple[tuple[str, str], ...] = ()) -> ast.File:
    """references: (import name, .proto text) of registered schemas this file imports."""
    if not content.strip():
        raise InvalidSchemaError("invalid Protobuf: empty document")
    try:
        parsed = _PARSER.parse(content)
        if references:
            imported = {name: _PARSER.parse(text) for name, text in references}
            object.__setattr__(parsed, "_registry_refs", imported)
        return parsed
    except InvalidSchemaError:
        raise
    except (ValueError, AttributeError, TypeError, IndexError) as exc:
        raise InvalidSchemaError(f"invalid Protobuf: {exc}") from exc


def canonical(content: str) -> str:
    return content.strip() + "\n"


def validate(parsed: ast.File, data: Any) -> list[str]:
    """Data checked against the file's first message by protobuf's JSON mapping."""
    message_class = getattr(parsed, "_registry_message_class", None)
    if message_class is None:
        message_class = _message_class(parsed)
        object.__setattr__(parsed, "_registry_message_class", message_class)
    if not isinstance(data, dict):
        return [f"/: a message is a JSON object, not {type(data).__name__}"]
    try:
        json_format.ParseDict(data, message_class())
    except json_format.ParseError as exc:
        return [str(exc)]
    return []


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


def _relative(name: str, package: str) -> str:
    prefix = f".{package}." if package else "."
    return name.removeprefix(prefix) if name.startswith(prefix) else name


def _renamed(schema: _Schema, into: _Schema, names: dict[str, str]) -> None:
    """Adds schema's messages, enums and oneofs to into under the names in names."""
    for message, fields in schema.messages.items():
        into.messages[names[message]] = {
            number: replace(
                f,
                type=names.get(f.type, f.type),
                map=f.map and (f.map[0], names.get(f.map[1], f.map[1])),
            )
            for number, f in fields.items()
        }
        into.oneofs[names[message]] = schema.oneofs.get(message, {})
    into.enums.update(names[e] for e in schema.enums)


def _comparable(document: ast.File) -> tuple[_Schema, frozenset[str]]:
    """The file's types (and those of the registered files it imports) named relative to
    the package that defines them, as the reference registries compare them: a package
    change, or a type moved between packages, keeps its name. Also the file's own
    message names (a message that moved into an import was removed from the file)."""
    cached = getattr(document, "_registry_comparable", None)
    if cached is not None:
        return cached
    schema = _models(document)
    imported = [_models(d) for d in getattr(document, "_registry_refs", {}).values()]
    names: dict[str, str] = {}
    for model in (*imported, schema):  # the file's own definitions win a clash
        for name in (*model.messages, *model.enums):
            names[name] = _relative(name, model.package)
    for model in (schema, *imported):  # a type the file does not define: its package off
        for fields in model.messages.values():
            for f in fields.values():
                for typ in f.map or (f.type,):
                    if typ not in _SCALARS and typ not in names:
                        names[typ] = _relative(typ, model.package)
    view = _Schema(package=schema.package)
    for model in imported:
        _renamed(model, view, names)
    _renamed(schema, view, names)
    cached = (view, frozenset(names[m] for m in schema.messages))
    object.__setattr__(document, "_registry_comparable", cached)
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
    """What data written with writer the reader cannot read, by field number; plus the
    two changes protobuf's language guide forbids whichever side reads (a required field
    removed or relaxed, a number's singular <-> repeated label), so they break both
    directions, as in the reference registries."""
    out: list[dict[str, str]] = []
    (mine, mine_own), (theirs, theirs_own) = _comparable(reader), _comparable(writer)
    for message, writer_fields in theirs.messages.items():
        reader_fields = mine.messages.get(message)
        where_message = f"/{message.lstrip('.')}"
        if message in theirs_own and message not in mine_own:
            out.append(violation("MESSAGE_REMOVED", where_message, f"{message} removed"))
        if reader_fields is None:
            continue  # an imported type no longer used: its fields' users say the rest
        for number, wfield in sorted(writer_fields.items()):
            rfield = reader_fields.get(number)
            where = f"{where_message}/{number}"
            if wfield.label == "required" and (rfield is None or rfield.label != "required"):
                # proto2's "required is forever" (language guide): a reader that no longer
                # requires it is fine itself, but the writers that follow it break every
                # reader that still does; Confluent flags the removal in BACKWARD too.
                out.append(
                    violation(
                        "REQUIRED_FIELD_REMOVED",
                        where,
                        f"{wfield.name} is no longer required (required is forever)",
                    )
                )
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
    numeric = rfield.type in _NUMERIC | mine.enums or wfield.type in _NUMERIC | theirs.enums
    if writer_repeated != reader_repeated and numeric:
        # Packed repeated numbers are not read by a singular numeric field; the language
        # guide calls singular <-> repeated unsafe for numbers (bools, enums too) either
        # way, as both reference registries do: the repeated reader of singular data is
        # fine itself, the writers that follow it break singular readers.
        change = "became singular" if writer_repeated else "became repeated"
        out.append(violation("FIELD_NUMERIC_LABEL_CHANGED", where, f"{wfield.name} {change}"))
    if rfield.label == "required" and wfield.label != "required":
        out.append(violation("REQUIRED_ADDED", where, f"{rfield.name} became required"))


def _compare_oneofs(message: str, mine: _Schema, theirs: _Schema, where: str, out: list) -> None:
    """A reader oneof breaks when the writer could set two of its fields at once: two
    plain fields moved into it, a plain field joining members of a writer oneof, or
    members of two writer oneofs merged. A renamed oneof is no change (the wire has no
    oneof names)."""
    writer_fields = theirs.messages[message]
    for group, numbers in mine.oneofs.get(message, {}).items():
        known = sorted(n for n in numbers if n in writer_fields)
        moved = [n for n in known if writer_fields[n].oneof is None]
        sources = {writer_fields[n].oneof for n in known} - {None}
        if len(moved) > 1:
            out.append(
                violation(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    f"{where}/{moved[0]}",
                    f"fields {moved} moved into one oneof {group}: data may set several",
                )
            )
        elif moved and sources:
            out.append(
                violation(
                    "FIELD_MOVED_TO_EXISTING_ONEOF",
                    f"{where}/{moved[0]}",
                    f"fields {moved} moved into the oneof {group} beside members of "
                    f"{', '.join(sorted(sources))}: data may set both",
                )
            )
        elif len(sources) > 1:
            out.append(
                violation(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    f"{where}/{known[0]}",
                    f"oneofs {', '.join(sorted(sources))} merged into {group}: data may set "
                    "one member of each",
                )
            )


_PROTO_TYPES = {
    "double": _FDP.TYPE_DOUBLE,
    "float": _FDP.TYPE_FLOAT,
    "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64,
    "int32": _FDP.TYPE_INT32,
    "fixed64": _FDP.TYPE_FIXED64,
    "fixed32": _FDP.TYPE_FIXED32,
    "bool": _FDP.TYPE_BOOL,
    "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES,
    "uint32": _FDP.TYPE_UINT32,
    "sfixed32": _FDP.TYPE_SFIXED32,
    "sfixed64": _FDP.TYPE_SFIXED64,
    "sint32": _FDP.TYPE_SINT32,
    "sint64": _FDP.TYPE_SINT64,
}
_LABELS = {"repeated": _FDP.LABEL_REPEATED, "required": _FDP.LABEL_REQUIRED}


def _message_class(document: ast.File) -> Any:
    """The protobuf message class of the file's first message (NotImplementedError when
    the file has none, or uses types from imports other than protobuf's own)."""
    schema = _models(document)
    proto = descriptor_pb2.FileDescriptorProto(
        name="registry_schema.proto", package=schema.package, syntax=document.syntax or "proto2"
    )
    pool = descriptor_pool.DescriptorPool()
    scope = f".{schema.package}" if schema.package else ""
    first = None
    for element in document.file_elements:
        if isinstance(element, ast.Import):
            imported = getattr(document, "_registry_refs", {}).get(element.name)
            if imported is not None:
                _add_reference(pool, element.name, imported)
            else:
                _add_import(pool, element.name)
            proto.dependency.append(element.name)
        elif isinstance(element, ast.Message):
            _build_message(proto.message_type.add(), element, scope, schema)
            first = first or f"{scope}.{element.name}".lstrip(".")
        elif isinstance(element, ast.Enum):
            _build_enum(proto.enum_type.add(), element)
    if first is None:
        raise NotImplementedError("data validation needs a message in the Protobuf schema")
    try:
        pool.Add(proto)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(first))
    except Exception as exc:  # descriptor building raises several types: all are a 422
        raise NotImplementedError(
            f"data validation is not available for this schema: {exc}"
        ) from exc


def _add_reference(pool: Any, name: str, document: ast.File) -> None:
    """A referenced (registered) .proto file, added to the pool under its import name."""
    schema = _models(document)
    proto = descriptor_pb2.FileDescriptorProto(
        name=name, package=schema.package, syntax=document.syntax or "proto2"
    )
    scope = f".{schema.package}" if schema.package else ""
    for element in document.file_elements:
        if isinstance(element, ast.Import):
            _add_import(pool, element.name)
            proto.dependency.append(element.name)
        elif isinstance(element, ast.Message):
            _build_message(proto.message_type.add(), element, scope, schema)
        elif isinstance(element, ast.Enum):
            _build_enum(proto.enum_type.add(), element)
    with contextlib.suppress(TypeError):
        pool.Add(proto)


def _add_import(pool: Any, name: str) -> None:
    if not name.startswith("google/protobuf/"):
        raise NotImplementedError(
            f"data validation needs the types of {name}: only protobuf's own imports are known"
        )
    known = descriptor_pool.Default()
    try:
        found = known.FindFileByName(name)
    except KeyError:
        module = name.removeprefix("google/protobuf/").removesuffix(".proto") + "_pb2"
        try:
            __import__(f"google.protobuf.{module}")
            found = known.FindFileByName(name)
        except (ImportError, KeyError) as exc:
            raise NotImplementedError(f"unknown import {name}") from exc
    for dependency in found.dependencies:
        _add_import(pool, dependency.name)
    file_proto = descriptor_pb2.FileDescriptorProto()
    found.CopyToProto(file_proto)
    with contextlib.suppress(TypeError):  # already added (a shared dependency)
        pool.Add(file_proto)


def _build_enum(target: Any, enum: ast.Enum) -> None:
    target.name = enum.name
    for value in enum.elements:
        if isinstance(value, ast.EnumValue):
            target.value.add(name=value.name, number=value.number)


def _set_type(target: Any, type_name: str, scope: str, schema: _Schema) -> None:
    resolved = _resolve(type_name, scope, schema)
    if resolved in _PROTO_TYPES:
        target.type = _PROTO_TYPES[resolved]
    else:
        target.type = _FDP.TYPE_ENUM if resolved in schema.enums else _FDP.TYPE_MESSAGE
        target.type_name = resolved


def _build_message(target: Any, message: ast.Message, scope: str, schema: _Schema) -> None:
    name = f"{scope}.{message.name}"
    target.name = message.name
    for element in message.elements:
        if isinstance(element, ast.Message):
            _build_message(target.nested_type.add(), element, name, schema)
        elif isinstance(element, ast.Enum):
            _build_enum(target.enum_type.add(), element)
        elif isinstance(element, ast.Field):
            added = target.field.add(name=element.name, number=element.number)
            added.label = _LABELS.get(_label(element.cardinality), _FDP.LABEL_OPTIONAL)
            _set_type(added, element.type, name, schema)
        elif isinstance(element, ast.OneOf):
            index = len(target.oneof_decl)
            target.oneof_decl.add(name=element.name)
            for member in element.elements:
                if isinstance(member, ast.Field):
                    added = target.field.add(
                        name=member.name, number=member.number, oneof_index=index
                    )
                    added.label = _FDP.LABEL_OPTIONAL
                    _set_type(added, member.type, name, schema)
        elif isinstance(element, ast.MapField):
            entry_name = "".join(p.capitalize() for p in element.name.split("_")) + "Entry"
            entry = target.nested_type.add(name=entry_name)
            entry.options.map_entry = True
            key = entry.field.add(name="key", number=1, label=_FDP.LABEL_OPTIONAL)
            _set_type(key, element.key_type, name, schema)
            value = entry.field.add(name="value", number=2, label=_FDP.LABEL_OPTIONAL)
            _set_type(value, element.value_type, name, schema)
            added = target.field.add(
                name=element.name,
                number=element.number,
                label=_FDP.LABEL_REPEATED,
                type=_FDP.TYPE_MESSAGE,
                type_name=f"{name}.{entry_name}",
            )
