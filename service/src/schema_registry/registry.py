"""Registry operations: register with versioning and compatibility, validate, compare."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from functools import lru_cache
from typing import Any

import orjson

from schema_registry import compatibility, metrics
from schema_registry.config import COMPATIBILITY_MODES
from schema_registry.errors import ApiError, InvalidSchemaError
from schema_registry.formats import FORMAT_ALIASES, FORMATS, violation
from schema_registry.store import Store, timed

STATES = ("DRAFT", "ACTIVE", "DEPRECATED", "ARCHIVED", "DELETED")
_SUBJECT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,254}$")
_VERSION = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")
_REGISTER_FIELDS = {
    "subject",
    "schema",
    "schema_type",
    "version_major",
    "version_minor",
    "version_patch",
    "description",
    "tags",
    "metadata",
    "compatibility_mode",
    "state",
    "references",
}
_MAX_VERSION_PART = 999_999_999
_MAX_REFERENCES = 64
_REF_FIELDS = {"name", "subject", "version"}
# Content that may name a registered schema: a non-local JSON $ref, a Protobuf import.
_REMOTE_REF = re.compile(r'"\$ref"\s*:\s*"(?!#)')


def bad_request(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "INVALID_REQUEST", message, {"field": field} if field else {})


def split_subject(subject: str) -> tuple[str, str]:
    """a.b.c -> (a.b, c); no dot -> (default, subject)."""
    if "." in subject:
        namespace, name = subject.rsplit(".", 1)
        return namespace, name
    return "default", subject


def check_subject(subject: Any) -> str:
    if not isinstance(subject, str) or not _SUBJECT.match(subject) or subject.endswith("."):
        raise bad_request(
            "subject must be 1-255 characters of letters, digits, '_', '-', '.', "
            "not starting or ending with '.'",
            "subject",
        )
    return subject


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.match(text)
    if not match:
        raise bad_request(f"version {text!r} is not x.y.z or 'latest'", "version")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch)


def version_of(row: dict[str, Any]) -> str:
    return f"{row['version_major']}.{row['version_minor']}.{row['version_patch']}"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def represent(row: dict[str, Any]) -> dict[str, Any]:
    """The API shape of a stored schema (GET by id and subject version lookups)."""
    content = row.get("content")
    schema: Any = content
    if content is not None and row["format"] in ("JSON", "AVRO"):
        schema = orjson.loads(content)
    out = {
        "id": str(row["id"]),
        "subject": row["subject"],
        "namespace": row["namespace"],
        "name": row["name"],
        "version": version_of(row),
        "format": row["format"],
        "schema_type": row["format"],
        "state": row["state"],
        "compatibility_mode": row["compatibility_mode"],
        "content_hash": row["content_hash"].strip(),
        "description": row.get("description"),
        "tags": list(row.get("tags") or []),
        "metadata": row.get("metadata") or {},
        "created_by": row.get("created_by"),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if "content" in row:
        out["schema"] = schema
    else:
        out.pop("metadata")
        out.pop("created_by")
    if row.get("deleted_at") is not None:
        out["deleted_at"] = _iso(row["deleted_at"])
    return out


@lru_cache(maxsize=2048)
def parse_cached(fmt: str, content: str, references: tuple[tuple[str, str], ...] = ()) -> Any:
    """Parsed schemas by content (and referenced contents): stored content never changes."""
    if references:
        return FORMATS[fmt].parse(content, references)
    return FORMATS[fmt].parse(content)


def may_reference(fmt: str, content: str) -> bool:
    """Could this stored schema use references (so they must be loaded to read it)?"""
    if fmt == "JSON":
        return _REMOTE_REF.search(content) is not None
    if fmt == "PROTOBUF":
        return "import" in content
    try:  # Avro: only a name no type of its own defines needs a referenced schema
        parse_cached(fmt, content)
    except InvalidSchemaError:
        return True
    return False


def reference_list(body: dict[str, Any]) -> list[dict[str, str]]:
    """The request's references [{name, subject, version}], checked."""
    refs = body.get("references") or []
    if not isinstance(refs, list) or len(refs) > _MAX_REFERENCES:
        raise bad_request(
            f"references must be a list of up to {_MAX_REFERENCES} {{name, subject, version}}",
            "references",
        )
    seen: set[str] = set()
    for index, ref in enumerate(refs):
        where = f"references[{index}]"
        if not isinstance(ref, dict) or set(ref) != _REF_FIELDS:
            raise bad_request(f"{where} must have exactly name, subject and version", where)
        name, version = ref["name"], ref["version"]
        if not isinstance(name, str) or not name.strip() or len(name) > 255 or name in seen:
            raise bad_request(f"{where}.name must be a unique non-empty string", where)
        seen.add(name)
        check_subject(ref["subject"])
        if not isinstance(version, str) or (version != "latest" and not _VERSION.match(version)):
            raise bad_request(f"{where}.version must be x.y.z or 'latest'", where)
    return refs


def _schema_text(value: Any, fmt: str) -> str:
    if isinstance(value, str):
        if not value.strip():
            raise ApiError(422, "INVALID_SCHEMA", "schema is empty")
        return value
    if fmt in ("JSON", "AVRO") and isinstance(value, dict | list | bool):
        return orjson.dumps(value).decode()
    raise ApiError(
        422,
        "INVALID_SCHEMA",
        f"schema for {fmt} must be a string" + (" or a JSON value" if fmt != "PROTOBUF" else ""),
    )


def _format_of(schema_type: Any) -> str:
    if not isinstance(schema_type, str) or schema_type.lower() not in FORMAT_ALIASES:
        raise bad_request("schema_type must be one of JSON, AVRO, PROTOBUF", "schema_type")
    return FORMAT_ALIASES[schema_type.lower()]


def _requested_version(body: dict[str, Any]) -> tuple[int, int, int] | None:
    parts = [body.get(k) for k in ("version_major", "version_minor", "version_patch")]
    if all(p is None for p in parts):
        return None
    for key, part in zip(("version_major", "version_minor", "version_patch"), parts, strict=True):
        if part is None:
            continue
        if (
            isinstance(part, bool)
            or not isinstance(part, int)
            or not (0 <= part <= _MAX_VERSION_PART)
        ):
            raise bad_request(f"{key} must be an integer 0..{_MAX_VERSION_PART}", key)
    major, minor, patch = (p or 0 for p in parts)
    return major, minor, patch


def _optional(body: dict[str, Any]) -> dict[str, Any]:
    description = body.get("description")
    if description is not None and not isinstance(description, str):
        raise bad_request("description must be a string", "description")
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise bad_request("tags must be a list of strings", "tags")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise bad_request("metadata must be an object", "metadata")
    state = body.get("state") or "ACTIVE"
    if state not in STATES or state == "DELETED":
        raise bad_request("state must be one of DRAFT, ACTIVE, DEPRECATED, ARCHIVED", "state")
    mode = body.get("compatibility_mode")
    if mode is not None and mode not in COMPATIBILITY_MODES:
        raise bad_request(
            f"compatibility_mode must be one of {', '.join(COMPATIBILITY_MODES)}",
            "compatibility_mode",
        )
    return {
        "description": description,
        "tags": tags,
        "metadata": metadata,
        "state": state,
        "mode": mode,
    }


def _parse_or_422(fmt: str, content: str, references: tuple = ()) -> Any:
    try:
        return parse_cached(fmt, content, references)
    except InvalidSchemaError as exc:
        raise ApiError(422, "INVALID_SCHEMA", str(exc), {"format": fmt}) from exc


class Registry:
    def __init__(self, store: Store, default_mode: str) -> None:
        self.store = store
        self.default_mode = default_mode

    async def register(  # noqa: PLR0915 - one transaction, read top to bottom
        self, body: Any, actor: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Returns (schema row, created). Identical content again -> (existing, False)."""
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object")
        unknown = sorted(set(body) - _REGISTER_FIELDS)
        if unknown:
            raise bad_request(f"unknown field {unknown[0]!r}", unknown[0])
        if "subject" not in body or "schema" not in body or "schema_type" not in body:
            missing = next(k for k in ("subject", "schema", "schema_type") if k not in body)
            raise bad_request(f"{missing} is required", missing)
        subject = check_subject(body["subject"])
        fmt = _format_of(body["schema_type"])
        options = _optional(body)
        wanted = _requested_version(body)
        text = _schema_text(body["schema"], fmt)
        resolved = [await self._resolve_reference(r, fmt) for r in reference_list(body)]
        parsed = _parse_or_422(fmt, text, tuple((r["name"], r["content"]) for r in resolved))
        content = FORMATS[fmt].canonical(text)
        digest = hashlib.sha256(content.encode()).hexdigest()
        namespace, name = split_subject(subject)
        async with (
            self.store.pool.connection() as conn,
            timed("register"),
            conn.transaction(),
        ):
            # One registration per subject at a time: versions and checks stay consistent.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (subject,))
            rows = await self.store.subject_versions(subject, conn, include_deleted=True)
            live = [r for r in rows if r["state"] != "DELETED"]
            if wanted is not None:
                same = next(
                    (
                        r
                        for r in rows
                        if (r["version_major"], r["version_minor"], r["version_patch"]) == wanted
                    ),
                    None,
                )
                if same is not None:
                    if same["content_hash"].strip() == digest and same["state"] != "DELETED":
                        return same, False
                    raise ApiError(
                        409,
                        "VERSION_CONFLICT",
                        f"{subject} version {version_of(same)} already exists with "
                        + ("different content" if same["state"] != "DELETED" else "state DELETED"),
                        {"subject": subject, "version": version_of(same), "id": str(same["id"])},
                    )
                version = wanted
            else:
                same = next((r for r in live if r["content_hash"].strip() == digest), None)
                if same is not None:
                    return same, False
                if rows:
                    top = rows[-1]
                    version = (top["version_major"], top["version_minor"] + 1, 0)
                else:
                    version = (1, 0, 0)
            if live and live[-1]["format"] != fmt:
                raise ApiError(
                    409,
                    "FORMAT_MISMATCH",
                    f"{subject} holds {live[-1]['format']} schemas, not {fmt}",
                    {"subject": subject},
                )
            mode = options["mode"] or (live[-1]["compatibility_mode"] if live else None)
            mode = mode or self.default_mode
            older = [
                r
                for r in live
                if (r["version_major"], r["version_minor"], r["version_patch"]) < version
            ]
            previous = await self._previous(fmt, mode, older)
            violations = compatibility.check(FORMATS[fmt], mode, parsed, previous)
            metrics.COMPATIBILITY_CHECKS.labels(
                mode, "incompatible" if violations else "compatible"
            ).inc()
            if violations:
                metrics.COMPATIBILITY_VIOLATIONS.labels(mode).inc(len(violations))
                raise ApiError(
                    409,
                    "INCOMPATIBLE_SCHEMA",
                    f"the new version of {subject} breaks {mode} compatibility",
                    {"mode": mode, "violations": violations},
                )
            row = await self.store.insert(
                conn,
                {
                    "id": uuid.uuid4(),
                    "namespace": namespace,
                    "name": name,
                    "subject": subject,
                    "version_major": version[0],
                    "version_minor": version[1],
                    "version_patch": version[2],
                    "format": fmt,
                    "content": content,
                    "content_hash": digest,
                    "state": options["state"],
                    "compatibility_mode": mode,
                    "description": options["description"],
                    "tags": options["tags"],
                    "metadata": options["metadata"],
                    "created_by": actor,
                },
            )
            await self.store.add_event(
                conn, str(row["id"]), "registered", actor, {"version": version_of(row)}
            )
            await self.store.insert_references(conn, row["id"], resolved)
        metrics.SCHEMAS_REGISTERED.labels(fmt, options["state"]).inc()
        return row, True

    async def _previous(
        self, fmt: str, mode: str, older: list[dict[str, Any]]
    ) -> list[tuple[str, Any]]:
        """The versions the mode compares with, parsed with what they reference."""
        if not mode.endswith("_TRANSITIVE"):
            older = older[-1:]
        return [
            (version_of(r), _parse_or_422(fmt, r["content"], await self.stored_refs(r)))
            for r in older
        ]

    async def _resolve_reference(self, ref: dict[str, str], fmt: str) -> dict[str, Any]:
        rows = await self.store.subject_versions(ref["subject"])
        if ref["version"] != "latest":
            rows = [r for r in rows if version_of(r) == ref["version"]]
        if not rows:
            raise ApiError(
                422,
                "REFERENCE_NOT_FOUND",
                f"reference {ref['name']!r}: no {ref['subject']} version {ref['version']}",
                {"reference": ref},
            )
        row = rows[-1]
        if row["format"] != fmt:
            raise ApiError(
                422,
                "REFERENCE_FORMAT_MISMATCH",
                f"reference {ref['name']!r} is a {row['format']} schema, not {fmt}",
                {"reference": ref},
            )
        return {
            "name": ref["name"],
            "subject": ref["subject"],
            "version": version_of(row),
            "id": row["id"],
            "content": row["content"],
        }

    async def stored_refs(self, record: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        """(name, content) of what a stored schema references (none read when it cannot)."""
        if not may_reference(record["format"], record["content"]):
            return ()
        return tuple((r["name"], r["content"]) for r in await self.store.references(record["id"]))

    @staticmethod
    def validate(
        fmt: str, content: str, data: Any, references: tuple[tuple[str, str], ...] = ()
    ) -> list[str]:
        parsed = _parse_or_422(fmt, content, references)
        started = time.perf_counter()
        try:
            errors = FORMATS[fmt].validate(parsed, data)
        except NotImplementedError as exc:
            raise ApiError(422, "UNSUPPORTED_OPERATION", str(exc), {"format": fmt}) from exc
        finally:
            metrics.VALIDATION_DURATION.observe(time.perf_counter() - started)
        metrics.VALIDATIONS.labels(fmt, "invalid" if errors else "valid").inc()
        return errors

    @staticmethod
    def compare(
        new: dict[str, Any],
        old: dict[str, Any],
        mode: str,
        refs: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = ((), ()),
    ) -> list[dict[str, str]]:
        if new["format"] != old["format"]:
            message = f"{new['format']} cannot be compared with {old['format']}"
            return [violation("FORMAT_MISMATCH", "/", message)]
        fmt = new["format"]
        violations = compatibility.check(
            FORMATS[fmt],
            mode,
            _parse_or_422(fmt, new["content"], refs[0]),
            [(version_of(old), _parse_or_422(fmt, old["content"], refs[1]))],
        )
        metrics.COMPATIBILITY_CHECKS.labels(
            mode, "incompatible" if violations else "compatible"
        ).inc()
        if violations:
            metrics.COMPATIBILITY_VIOLATIONS.labels(mode).inc(len(violations))
        return violations
