"""PostgreSQL access: the pool and every query the service runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from schema_registry import metrics
from schema_registry.dbha import DatabaseState, GuardedPool, read_applied

_COLUMNS = (
    "id, namespace, name, subject, version_major, version_minor, version_patch, format, "
    "content, content_hash, state, compatibility_mode, description, tags, metadata, "
    "created_by, created_at, updated_at, deleted_at"
)
_SUMMARY_COLUMNS = (
    "id, namespace, name, subject, version_major, version_minor, version_patch, format, "
    "content_hash, state, compatibility_mode, description, tags, created_at, updated_at"
)


async def _configure(conn: AsyncConnection) -> None:
    conn.row_factory = dict_row  # type: ignore[assignment]


def connection_kwargs(
    connect_timeout: float, tcp_user_timeout: float, keepalives_idle: int
) -> dict[str, Any]:
    """libpq options that notice a vanished server within a few seconds (no RST needed)."""
    return {
        "connect_timeout": max(1, round(connect_timeout)),  # per host of a multi-host URL
        "keepalives": 1,
        "keepalives_idle": keepalives_idle,
        "keepalives_interval": 1,
        "keepalives_count": 2,
        "tcp_user_timeout": int(tcp_user_timeout * 1000),
    }


def make_pool(
    url: str,
    min_size: int,
    max_size: int,
    connect_timeout: float,
    wait_timeout: float,
    *,
    state: DatabaseState | None = None,
    tcp_user_timeout: float = 2.0,
    keepalives_idle: int = 2,
) -> GuardedPool:
    """wait_timeout: how long a request may wait for a connection before it gets 503."""
    pool = GuardedPool(
        url,
        min_size=min_size,
        max_size=max_size,
        timeout=wait_timeout,
        open=False,
        kwargs={
            "autocommit": True,
            **connection_kwargs(connect_timeout, tcp_user_timeout, keepalives_idle),
        },
        configure=_configure,
        # A connection that died while idle is replaced before a request gets it.
        check=GuardedPool.check_connection,
        # Give up a reconnect series after 10 s (its backoff doubles without a cap); the
        # next request or the recovery probe (dbha.Prober) grows the pool again at once.
        reconnect_timeout=10,
    )
    pool.state = state or DatabaseState()
    return pool


@asynccontextmanager
async def timed(query: str) -> AsyncIterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.DB_QUERY_DURATION.labels(query).observe(time.perf_counter() - started)


class Store:
    def __init__(self, pool: GuardedPool) -> None:
        self.pool = pool

    async def ping(self) -> None:
        async with self.pool.connection() as conn, timed("ping"):
            await conn.execute("SELECT 1")

    async def applied_migrations(self) -> set[str]:
        async with self.pool.connection() as conn, timed("migrations"):
            return await read_applied(conn)

    async def get(self, schema_id: str) -> dict[str, Any] | None:
        async with self.pool.connection() as conn, timed("get_schema"):
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM schemas WHERE id = %s",  # noqa: S608 - fixed column list
                (schema_id,),
            )
            return await cur.fetchone()

    async def list(
        self,
        limit: int,
        offset: int,
        subject_prefix: str | None,
        schema_format: str | None,
        state: str | None,
    ) -> tuple[list[dict[str, Any]], int]:
        where = ["TRUE"]
        params: list[Any] = []
        if subject_prefix:
            where.append("starts_with(subject, %s)")
            params.append(subject_prefix)
        if schema_format:
            where.append("format = %s")
            params.append(schema_format)
        if state:
            where.append("state = %s")
            params.append(state)
        else:
            where.append("state <> 'DELETED'")
        condition = " AND ".join(where)
        async with self.pool.connection() as conn, timed("list_schemas"):
            cur = await conn.execute(
                f"SELECT {_SUMMARY_COLUMNS}, count(*) OVER () AS total FROM schemas"  # noqa: S608 - conditions are fixed strings, values bound
                f" WHERE {condition} ORDER BY subject, version_major, version_minor,"
                " version_patch LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            rows = await cur.fetchall()
            if rows:
                return rows, rows[0]["total"]
            cur = await conn.execute(
                f"SELECT count(*) AS total FROM schemas WHERE {condition}",  # noqa: S608 - as above
                params,
            )
            total = await cur.fetchone()
            return [], total["total"] if total else 0

    async def subjects(self) -> list[str]:
        async with self.pool.connection() as conn, timed("subjects"):
            cur = await conn.execute(
                "SELECT DISTINCT subject FROM schemas WHERE state <> 'DELETED' ORDER BY subject"
            )
            return [row["subject"] for row in await cur.fetchall()]

    async def subject_versions(
        self, subject: str, conn: AsyncConnection | None = None, include_deleted: bool = False
    ) -> list[dict[str, Any]]:
        query = (
            f"SELECT {_COLUMNS} FROM schemas WHERE subject = %s"  # noqa: S608 - fixed columns
            + ("" if include_deleted else " AND state <> 'DELETED'")
            + " ORDER BY version_major, version_minor, version_patch"
        )
        if conn is not None:
            cur = await conn.execute(query, (subject,))
            return await cur.fetchall()
        async with self.pool.connection() as own, timed("subject_versions"):
            cur = await own.execute(query, (subject,))
            return await cur.fetchall()

    async def insert(self, conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
        cur = await conn.execute(
            "INSERT INTO schemas (id, namespace, name, subject, version_major, version_minor,"
            " version_patch, format, content, content_hash, state, compatibility_mode,"
            " description, tags, metadata, created_by) VALUES (%(id)s, %(namespace)s,"
            " %(name)s, %(subject)s, %(version_major)s, %(version_minor)s, %(version_patch)s,"
            " %(format)s, %(content)s, %(content_hash)s, %(state)s, %(compatibility_mode)s,"
            " %(description)s, %(tags)s, %(metadata)s, %(created_by)s)"
            " RETURNING *",
            {**row, "metadata": Jsonb(row["metadata"])},
        )
        inserted = await cur.fetchone()
        assert inserted is not None  # noqa: S101 - RETURNING always yields the row
        return inserted

    async def add_event(
        self, conn: AsyncConnection, schema_id: str, event: str, actor: str | None, details: Any
    ) -> None:
        await conn.execute(
            "INSERT INTO schema_events (schema_id, event_type, actor, details)"
            " VALUES (%s, %s, %s, %s)",
            (schema_id, event, actor, Jsonb(details)),
        )

    async def record_check(
        self,
        schema_id: str,
        compared_id: str,
        mode: str,
        is_compatible: bool,
        violations: list[dict[str, str]],
    ) -> None:
        async with self.pool.connection() as conn, timed("record_check"):
            await conn.execute(
                "INSERT INTO compatibility_checks"
                " (schema_id, compared_schema_id, mode, is_compatible, violations)"
                " VALUES (%s, %s, %s, %s, %s)",
                (schema_id, compared_id, mode, is_compatible, Jsonb(violations)),
            )

    async def delete(self, schema_id: str, permanent: bool, actor: str | None) -> bool:
        async with self.pool.connection() as conn, timed("delete"), conn.transaction():
            if permanent:
                cur = await conn.execute("DELETE FROM schemas WHERE id = %s", (schema_id,))
            else:
                cur = await conn.execute(
                    "UPDATE schemas SET state = 'DELETED', deleted_at = now(), updated_at = now()"
                    " WHERE id = %s AND state <> 'DELETED'",
                    (schema_id,),
                )
            if cur.rowcount == 0:
                return False
            await self.add_event(
                conn, schema_id, "hard_deleted" if permanent else "soft_deleted", actor, {}
            )
            return True

    # --- schema references (migration 0003) -------------------------------------------
    async def insert_references(
        self, conn: AsyncConnection, schema_id: Any, references: list[dict[str, Any]]
    ) -> None:
        for ref in references:
            await conn.execute(
                "INSERT INTO schema_dependencies (schema_id, name, referenced_subject,"
                " referenced_version, referenced_schema_id) VALUES (%s, %s, %s, %s, %s)",
                (schema_id, ref["name"], ref["subject"], ref["version"], ref["id"]),
            )

    async def references(self, schema_id: str) -> list[dict[str, Any]]:
        """What a schema references: name, subject, version, id and the content."""
        async with self.pool.connection() as conn, timed("references"):
            cur = await conn.execute(
                "SELECT d.name, d.referenced_subject AS subject, d.referenced_version AS version,"
                " s.id, s.format, s.content FROM schema_dependencies d"
                " JOIN schemas s ON s.id = d.referenced_schema_id"
                " WHERE d.schema_id = %s ORDER BY d.name",
                (schema_id,),
            )
            return await cur.fetchall()

    async def dependents(self, schema_id: str) -> list[dict[str, Any]]:
        """The live schemas that reference this one."""
        async with self.pool.connection() as conn, timed("dependents"):
            cur = await conn.execute(
                "SELECT s.id, s.subject, s.version_major, s.version_minor, s.version_patch,"
                " d.name FROM schema_dependencies d JOIN schemas s ON s.id = d.schema_id"
                " WHERE d.referenced_schema_id = %s AND s.state <> 'DELETED'"
                " ORDER BY s.subject, s.version_major, s.version_minor, s.version_patch",
                (schema_id,),
            )
            return await cur.fetchall()

    def pool_stats(self) -> dict[str, int]:
        stats = self.pool.get_stats()
        size = stats.get("pool_size", 0)
        idle = stats.get("pool_available", 0)
        return {"active": size - idle, "idle": idle, "max": self.pool.max_size}
