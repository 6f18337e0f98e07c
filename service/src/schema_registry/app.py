"""The HTTP API (Starlette on uvicorn). create_app() is the uvicorn factory."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
import psycopg
import yaml
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schema_registry import logs, metrics
from schema_registry._version import BROKEN, __version__
from schema_registry.cache import SchemaCache
from schema_registry.config import COMPATIBILITY_MODES, Config, load_config
from schema_registry.dbha import DatabaseState, DatabaseUnavailable, Prober, retry_write
from schema_registry.errors import ApiError
from schema_registry.formats import FORMAT_ALIASES, json_schema
from schema_registry.registry import STATES, Registry, check_subject, parse_version, represent
from schema_registry.store import Store, connection_kwargs, make_pool

log = logging.getLogger("schema_registry.http")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
# What a subject can start with (registry._SUBJECT): anything else, a NUL byte included
# (PostgreSQL text cannot hold one), is a client error, not a query.
_SUBJECT_PREFIX = re.compile(r"^[A-Za-z0-9_.\-]{0,255}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_JSON = "application/json"
_MAX_LIST_LIMIT = 1000


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=_JSON, headers=headers)


class Observability:
    """Request id, body limit, Prometheus metrics and the access log, as plain ASGI."""

    def __init__(self, app: ASGIApp, body_limit: int, access_log: bool) -> None:
        self.app = app
        self.body_limit = body_limit
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.match(candidate) else None
            elif name == b"content-length":
                length = value
        request_id = request_id or uuid.uuid4().hex
        scope["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        limit = self.body_limit
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        metrics.HTTP_IN_FLIGHT.inc()
        try:
            if length is not None and length.isdigit() and int(length) > limit:
                error = ApiError(413, "PAYLOAD_TOO_LARGE", f"request body exceeds {limit} bytes")
                await json_response(error.body(request_id), 413)(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            route = scope.get("route")
            path = getattr(route, "path", "<unmatched>")
            elapsed = time.perf_counter() - started
            method = scope["method"]
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, path).observe(elapsed)
            if self.access_log:
                log.info(
                    "request",
                    extra={
                        "request_id": request_id,
                        "method": method,
                        "path": scope["path"],
                        "route": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                    },
                )


class KeepAlive:
    """Starlette re-raises an unhandled error after answering it with a 500, and the
    server then drops the client's keep-alive connection: the error stops here."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:  # answered (and logged) by internal_error already
                return
            log.exception("unhandled error", extra={"request_id": scope.get("request_id")})
            error = ApiError(
                500, "INTERNAL_ERROR", "internal error; see the log for the request id"
            )
            await json_response(error.body(scope.get("request_id", "-")), 500)(scope, receive, send)


class Service:
    """Everything a request handler needs, built once per worker."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.db = DatabaseState()
        self.pool = make_pool(
            config.database_url,
            config.pool_min,
            config.pool_max,
            config.db_connect_timeout,
            config.db_pool_timeout,
            state=self.db,
            tcp_user_timeout=config.db_tcp_user_timeout,
            keepalives_idle=config.db_keepalives_idle,
        )
        # Its own connections, so it answers while the pool waits; libpq tries each host
        # of a multi-host URL for connect_timeout, hence the deadline.
        hosts = max(1, config.database_url.split("/")[2].count(",") + 1)
        self.prober = Prober(
            self.pool,
            config.database_url,
            connection_kwargs(
                config.db_connect_timeout, config.db_tcp_user_timeout, config.db_keepalives_idle
            ),
            deadline=hosts * max(2.0, config.db_connect_timeout) + 1,
        )
        self.store = Store(self.pool)
        self.registry = Registry(self.store, config.default_compatibility)
        json_schema.set_default_draft(config.json_schema_default_draft)
        self.cache = SchemaCache(
            config.redis_url,
            config.redis_ttl_seconds,
            config.redis_timeout,
            config.local_cache_ttl,
            config.local_cache_entries,
            sentinels=config.redis_sentinels,
            sentinel_master=config.redis_sentinel_master,
            sentinel_username=config.redis_sentinel_username,
            sentinel_password=config.redis_sentinel_password,
            tls_ca_file=config.redis_tls_ca_file,
        )
        self.keys = {key.sha256: key for key in config.api_keys}
        self.openapi: bytes | None = None

    # --- auth -------------------------------------------------------------------------
    def authorize(self, request: Request, scope: str) -> str | None:
        """The API key's name for a request that needs `scope` (read, write or admin).

        401 when a key is needed and missing or unknown (a rotated-out key is unknown);
        403 INSUFFICIENT_SCOPE when the key lacks the scope. Reads need no key unless
        auth.protect_reads is set.
        """
        if scope == "read" and not self.config.protect_reads:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401, "AUTH_REQUIRED", "this request needs an API key (Authorization: Bearer ...)"
            )
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        found = None
        for known, key in self.keys.items():
            if hmac.compare_digest(known, digest):
                found = key
        if found is None:
            raise ApiError(401, "INVALID_API_KEY", "the API key is not valid")
        if not found.grants(scope):
            raise ApiError(
                403,
                "INSUFFICIENT_SCOPE",
                f"the API key '{found.name}' lacks the scope '{scope}' this request needs",
                {"required_scope": scope, "key_scopes": list(found.scopes)},
            )
        return found.name

    # --- schema lookups ---------------------------------------------------------------
    async def schema_body(self, schema_id: str, include_deleted: bool = False) -> bytes:
        """The JSON of a schema by id: Redis first, then PostgreSQL (which fills Redis)."""
        if not _UUID.match(schema_id):
            raise ApiError(400, "INVALID_ID", "schema id must be a UUID", {"id": schema_id})
        schema_id = schema_id.lower()  # one cache key per schema, whatever the caller's case
        cached = await self.cache.get(schema_id)
        if cached is not None:
            return cached
        row = await self.store.get(schema_id)
        if row is None or (row["state"] == "DELETED" and not include_deleted):
            raise ApiError(404, "SCHEMA_NOT_FOUND", f"no schema with id {schema_id}")
        body = orjson.dumps(represent(row))
        if row["state"] != "DELETED":
            await self.cache.set(schema_id, body)
        return body

    async def schema_record(self, schema_id: str) -> dict[str, Any]:
        """A schema with its content as stored (canonical text), for validate/compare."""
        record = orjson.loads(await self.schema_body(schema_id))
        schema = record["schema"]
        # JSON and Avro content is JSON text: a primitive Avro schema ("int") comes
        # back as a JSON string and must be dumped again, not used as the text.
        record["content"] = (
            schema
            if record["format"] == "PROTOBUF"
            else orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        )
        major, minor, patch = (int(p) for p in record["version"].split("."))
        record.update(version_major=major, version_minor=minor, version_patch=patch)
        return record

    async def update_pool_gauges(self) -> None:
        while True:
            stats = self.store.pool_stats()
            metrics.DB_CONNECTIONS_ACTIVE.set(stats["active"])
            metrics.DB_CONNECTIONS_IDLE.set(stats["idle"])
            metrics.DB_CONNECTIONS_MAX.set(stats["max"])
            await asyncio.sleep(5)


async def read_json(request: Request, *, stored: bool = True) -> Any:
    """The request's JSON document; `stored=False` for data that is only read (validated),
    never written to the database, so it may hold any JSON string."""
    body = await request.body()
    if not body:
        raise ApiError(400, "INVALID_JSON", "request body is empty; a JSON document is needed")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "INVALID_JSON", f"request body is not valid JSON: {exc}") from exc
    # PostgreSQL text and jsonb cannot hold a NUL character: refuse it here with a 400
    # naming where it is, not a 500 from the database. Only a body with the escape can
    # hold one, so most requests skip the walk.
    where = _nul_at(document) if stored and b"\\u0000" in body else None
    if where is not None:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"request body holds a NUL character (\\u0000) at {where}; text cannot store it",
            {"field": where},
        )
    return document


def _nul_at(value: Any, path: str = "$") -> str | None:
    """JSON path of the first string or key holding a NUL character, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"{path} (a key)"
            items.append((f"{path}.{key}", item))
    elif isinstance(value, list):
        items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    for where, item in items:
        found = _nul_at(item, where)
        if found is not None:
            return found
    return None


def _service(request: Request) -> Service:
    return request.app.state.service


def _query_int(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(
            400, "INVALID_REQUEST", f"{key} must be an integer {low}..{high}", {"field": key}
        )
    return int(raw)


def _query_bool(request: Request, key: str) -> bool:
    raw = request.query_params.get(key, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "INVALID_REQUEST", f"{key} must be true or false", {"field": key})
    return raw in ("true", "1")


# --- endpoints --------------------------------------------------------------------------
async def livez(request: Request) -> Response:
    """No I/O: the floor of the stack (liveness and the benchmark's baseline)."""
    return Response(b'{"status":"ok"}', media_type=_JSON)


async def health(request: Request) -> Response:
    service = _service(request)
    database = "up"
    try:
        async with asyncio.timeout(2):
            await service.store.ping()
    except (psycopg.Error, PoolTimeout, TimeoutError):
        database = "down"
    redis_state = await service.cache.ping()
    healthy = database == "up" and redis_state in ("up", "disabled")
    return json_response(
        {
            "status": "healthy" if healthy else "degraded",
            "version": __version__,
            "components": {
                "database": {"status": database},
                "redis": {"status": redis_state},
            },
        }
    )


async def ready(request: Request) -> Response:
    service = _service(request)
    if BROKEN:
        return json_response(
            {
                "status": "not_ready",
                "version": __version__,
                "reason": "broken build: this release is built to fail readiness",
            },
            503,
        )
    if service.db.available:
        # Ask now (migrations may have been applied since the last probe); a failure
        # opens the circuit and the answer comes from the last successful contact.
        try:
            async with asyncio.timeout(0.5):
                service.db.reached(await service.store.applied_migrations())
        except TimeoutError:
            service.db.wake.set()  # slow or saturated: let the probe find out which
        except (psycopg.Error, PoolTimeout):
            pass
    status, body = service.db.readiness()
    return json_response({**body, "version": __version__}, status)


async def openapi(request: Request) -> Response:
    service = _service(request)
    if service.openapi is None:
        text = resources.files("schema_registry").joinpath("openapi.yaml").read_text("utf-8")
        document = yaml.safe_load(text)
        document["info"]["version"] = __version__
        service.openapi = orjson.dumps(document)
    return Response(service.openapi, media_type=_JSON)


async def register_schema(request: Request) -> Response:
    service = _service(request)
    actor = service.authorize(request, "write")
    body = await read_json(request)
    # Idempotent on identical content, so retried through a primary change (bounded).
    row, created = await retry_write(
        service.db,
        lambda: service.registry.register(body, actor),
        service.config.db_write_retry_seconds,
    )
    payload = {
        "id": str(row["id"]),
        "subject": row["subject"],
        "version": f"{row['version_major']}.{row['version_minor']}.{row['version_patch']}",
        "created_at": row["created_at"].isoformat(),
        "created": created,
    }
    return json_response(payload, 201 if created else 200)


async def get_schema(request: Request) -> Response:
    service = _service(request)
    service.authorize(request, "read")
    include_deleted = _query_bool(request, "include_deleted")
    body = await service.schema_body(request.path_params["schema_id"], include_deleted)
    return Response(body, media_type=_JSON)


async def list_schemas(request: Request) -> Response:
    service = _service(request)
    service.authorize(request, "read")
    limit = _query_int(request, "limit", 100, 1, _MAX_LIST_LIMIT)
    offset = _query_int(request, "offset", 0, 0, 10**9)
    schema_type = request.query_params.get("schema_type")
    fmt = None
    if schema_type is not None:
        fmt = FORMAT_ALIASES.get(schema_type.lower())
        if fmt is None:
            raise ApiError(
                400,
                "INVALID_REQUEST",
                "schema_type must be one of JSON, AVRO, PROTOBUF",
                {"field": "schema_type"},
            )
    state = request.query_params.get("state")
    if state is not None and state not in STATES:
        raise ApiError(
            400, "INVALID_REQUEST", f"state must be one of {', '.join(STATES)}", {"field": "state"}
        )
    prefix = request.query_params.get("subject_prefix") or None
    if prefix is not None and not _SUBJECT_PREFIX.match(prefix):
        raise ApiError(
            400,
            "INVALID_REQUEST",
            "subject_prefix may hold only letters, digits, '_', '-', '.' (up to 255)",
            {"field": "subject_prefix"},
        )
    rows, total = await service.store.list(limit, offset, prefix, fmt, state)
    return json_response(
        {
            "schemas": [represent(r) for r in rows],
            "total": total,
            "limit": limit,
            "offset": offset,
        }
    )


async def delete_schema(request: Request) -> Response:
    service = _service(request)
    permanent = _query_bool(request, "permanent")
    # A soft delete can be undone (the row stays, state DELETED); removing the row cannot.
    actor = service.authorize(request, "admin" if permanent else "write")
    schema_id = request.path_params["schema_id"]
    if not _UUID.match(schema_id):
        raise ApiError(400, "INVALID_ID", "schema id must be a UUID", {"id": schema_id})
    schema_id = schema_id.lower()
    await _refuse_if_referenced(service, schema_id)
    if not await service.store.delete(schema_id, permanent, actor):
        raise ApiError(404, "SCHEMA_NOT_FOUND", f"no schema with id {schema_id}")
    await service.cache.invalidate(schema_id)
    return json_response({"id": schema_id, "deleted": True, "permanent": permanent})


async def validate_data(request: Request) -> Response:
    service = _service(request)
    service.authorize(request, "read")
    record = await service.schema_record(request.path_params["schema_id"])
    data = await read_json(request, stored=False)
    refs = await service.registry.stored_refs(record)
    errors = service.registry.validate(record["format"], record["content"], data, refs)
    return json_response({"is_valid": not errors, "errors": errors})


async def check_compatibility(request: Request) -> Response:
    service = _service(request)
    # write: the check is recorded in the database (compatibility_checks).
    service.authorize(request, "write")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_REQUEST", "body must be a JSON object")
    for key in ("schema_id", "compared_schema_id"):
        if not isinstance(body.get(key), str):
            raise ApiError(400, "INVALID_REQUEST", f"{key} is required", {"field": key})
    new = await service.schema_record(body["schema_id"])
    old = await service.schema_record(body["compared_schema_id"])
    mode = body.get("mode") or new["compatibility_mode"]
    if mode not in COMPATIBILITY_MODES:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"mode must be one of {', '.join(COMPATIBILITY_MODES)}",
            {"field": "mode"},
        )
    refs = (await service.registry.stored_refs(new), await service.registry.stored_refs(old))
    violations = service.registry.compare(new, old, mode, refs)
    with contextlib.suppress(psycopg.Error, PoolTimeout):
        await service.store.record_check(new["id"], old["id"], mode, not violations, violations)
    return json_response({"is_compatible": not violations, "mode": mode, "violations": violations})


async def list_subjects(request: Request) -> Response:
    service = _service(request)
    service.authorize(request, "read")
    return json_response({"subjects": await service.store.subjects()})


async def subject_versions(request: Request) -> Response:
    service = _service(request)
    service.authorize(request, "read")
    subject = check_subject(request.path_params["subject"])
    rows = await service.store.subject_versions(subject)
    if not rows:
        raise ApiError(404, "SUBJECT_NOT_FOUND", f"no subject {subject}")
    versions = [f"{r['version_major']}.{r['version_minor']}.{r['version_patch']}" for r in rows]
    return json_response({"subject": subject, "versions": versions})


async def subject_version(request: Request) -> Response:
    service = _service(request)
    service.authorize(request, "read")
    subject = check_subject(request.path_params["subject"])
    wanted = request.path_params["version"]
    target = None if wanted == "latest" else parse_version(wanted)
    rows = await service.store.subject_versions(subject)
    if not rows:
        raise ApiError(404, "SUBJECT_NOT_FOUND", f"no subject {subject}")
    if target is None:
        return json_response(represent(rows[-1]))
    for row in rows:
        if (row["version_major"], row["version_minor"], row["version_patch"]) == target:
            return json_response(represent(row))
    raise ApiError(404, "VERSION_NOT_FOUND", f"{subject} has no version {wanted}")


# --- schema references ------------------------------------------------------------------
def _reference_view(row: dict[str, Any]) -> dict[str, Any]:
    version = row.get("version") or (
        f"{row['version_major']}.{row['version_minor']}.{row['version_patch']}"
    )
    return {
        "name": row["name"],
        "id": str(row["id"]),
        "subject": row["subject"],
        "version": version,
    }


async def _refuse_if_referenced(service: Service, schema_id: str) -> None:
    dependents = await service.store.dependents(schema_id)
    if dependents:
        raise ApiError(
            409,
            "SCHEMA_REFERENCED",
            f"schema {schema_id} is referenced by {len(dependents)} schema(s); delete those first",
            {"dependents": [_reference_view(d) for d in dependents]},
        )


async def schema_dependents(request: Request) -> Response:
    """The live schemas that reference this one (which block its deletion)."""
    service = _service(request)
    service.authorize(request, "read")
    record = await service.schema_record(request.path_params["schema_id"])
    dependents = await service.store.dependents(record["id"])
    return json_response(
        {"id": record["id"], "dependents": [_reference_view(d) for d in dependents]}
    )


async def schema_references(request: Request) -> Response:
    """What this schema references: name, subject, version and the id it resolved to."""
    service = _service(request)
    service.authorize(request, "read")
    record = await service.schema_record(request.path_params["schema_id"])
    refs = await service.store.references(record["id"])
    return json_response({"id": record["id"], "references": [_reference_view(r) for r in refs]})


# --- errors -----------------------------------------------------------------------------
def _request_id(request: Request) -> str:
    return request.scope.get("request_id", "-")


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return json_response(exc.body(_request_id(request)), exc.status, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}
    error = ApiError(exc.status_code, codes.get(exc.status_code, "HTTP_ERROR"), str(exc.detail))
    return json_response(error.body(_request_id(request)), exc.status_code, exc.headers)


async def database_error(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", exc, extra={"request_id": _request_id(request)})
    reason = type(exc.__cause__ or exc).__name__
    error = ApiError(
        503,
        "DATABASE_UNAVAILABLE",
        "the database is unavailable; nothing was changed, retry later",
        {"reason": reason},
    )
    retry_after = "2" if isinstance(exc, DatabaseUnavailable) else "5"
    return json_response(error.body(_request_id(request)), 503, {"Retry-After": retry_after})


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": _request_id(request)})
    error = ApiError(500, "INTERNAL_ERROR", "internal error; see the log for the request id")
    return json_response(error.body(_request_id(request)), 500)


ROUTES = [
    Route("/livez", livez),
    Route("/health", health),
    Route("/ready", ready),
    Route("/openapi.json", openapi),
    Route("/api/v1/schemas", register_schema, methods=["POST"]),
    Route("/api/v1/schemas", list_schemas, methods=["GET"]),
    Route("/api/v1/schemas/{schema_id}", get_schema, methods=["GET"]),
    Route("/api/v1/schemas/{schema_id}", delete_schema, methods=["DELETE"]),
    Route("/api/v1/schemas/{schema_id}/dependents", schema_dependents, methods=["GET"]),
    Route("/api/v1/schemas/{schema_id}/references", schema_references, methods=["GET"]),
    Route("/api/v1/validate/{schema_id}", validate_data, methods=["POST"]),
    Route("/api/v1/compatibility/check", check_compatibility, methods=["POST"]),
    Route("/api/v1/subjects", list_subjects, methods=["GET"]),
    Route("/api/v1/subjects/{subject}/versions", subject_versions, methods=["GET"]),
    Route("/api/v1/subjects/{subject}/versions/{version}", subject_version, methods=["GET"]),
]


def create_app(config: Config | None = None) -> ASGIApp:
    config = config or load_config()
    logs.setup(config.log_level)
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # wait=False: start even while the database is down; /ready tells the truth.
        await service.pool.open(wait=False)
        gauges = asyncio.create_task(service.update_pool_gauges())
        prober = asyncio.create_task(service.prober.run())
        listener = asyncio.create_task(service.cache.listen_invalidations())
        metrics.BUILD_INFO.labels(__version__, str(BROKEN).lower()).set(1)
        log.info("worker started", extra={"version": __version__, "broken": BROKEN})
        try:
            yield
        finally:
            gauges.cancel()
            prober.cancel()
            listener.cancel()
            await service.pool.close()
            await service.cache.close()
            log.info("worker stopped", extra={"version": __version__})

    app = Starlette(
        routes=ROUTES,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            psycopg.OperationalError: database_error,
            psycopg.InterfaceError: database_error,
            PoolTimeout: database_error,
            Exception: internal_error,
        },
    )
    app.state.service = service
    return Observability(KeepAlive(app), config.body_limit_bytes, config.access_log)
