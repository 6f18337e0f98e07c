"""Protobuf: syntax check with proto-schema-parser; compatibility by field numbers.

Data validation is not offered for Protobuf (the registry holds .proto text, not
compiled descriptors); the API answers such requests with 422 UNSUPPORTED_OPERATION.
"""

from __future__ import annotations

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


def _messages(elements: list, prefix: str, out: dict) -> dict[str, dict[int, Any]]:
    for element in elements:
        if isinstance(element, ast.Message):
            name = f"{prefix}{element.name}"
            out[name] = {f.number: f for f in element.elements if isinstance(f, ast.Field)}
            _messages(element.elements, f"{name}.", out)
    return out


def reader_rejections(reader: ast.File, writer: ast.File) -> list[dict[str, str]]:
    """Fields kept under the same number must keep their type and cardinality."""
    out: list[dict[str, str]] = []
    reader_messages = _messages(reader.file_elements, "", {})
    writer_messages = _messages(writer.file_elements, "", {})
    for message, writer_fields in writer_messages.items():
        reader_fields = reader_messages.get(message)
        if reader_fields is None:
            continue
        for number, wfield in writer_fields.items():
            rfield = reader_fields.get(number)
            where = f"/{message}/{number}"
            if rfield is None:
                continue
            if rfield.type != wfield.type:
                out.append(
                    violation(
                        "FIELD_TYPE_CHANGED",
                        where,
                        f"field {number} changed type {wfield.type} -> {rfield.type}",
                    )
                )
            if rfield.cardinality != wfield.cardinality:
                out.append(
                    violation("FIELD_CARDINALITY_CHANGED", where, f"field {number} cardinality")
                )
        for number, rfield in reader_fields.items():
            if number not in writer_fields and str(rfield.cardinality).endswith("REQUIRED"):
                out.append(
                    violation("REQUIRED_ADDED", f"/{message}/{number}", "required field added")
                )
    return out
