"""Database availability: a fail-fast circuit, a background probe, the readiness state
and the bounded retry of idempotent writes.

The pool (GuardedPool) reports every connection-level failure to the circuit
(DatabaseState). After one, requests that need the database fail at once with
DatabaseUnavailable (503 + Retry-After) instead of each waiting for the pool, until the
background probe reaches a read-write server again (it runs at once after a failure,
then every probe_interval_open seconds; every probe_interval_closed seconds while all is
well). The probe also records whether this release's migrations are applied: /ready
answers from that record when the database cannot be asked right now.

A connection that lands on a read-only server (the primary was demoted, or a standby
was promoted elsewhere) raises read_only_sql_transaction: that connection is closed,
the idle ones are drained (libpq's target_session_attrs=read-write then finds the new
primary on reconnect) and the request gets DatabaseUnavailable, which register retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from schema_registry import metrics
from schema_registry.migrations_runner import known_versions

log = logging.getLogger("schema_registry.db")
T = TypeVar("T")

# SQLSTATEs that mean "this server cannot take the request now; another may":
# admin_shutdown, crash_shutdown, cannot_connect_now, read_only_sql_transaction,
# and the whole connection exception class 08.
_FAILOVER_STATES = {"57P01", "57P02", "57P03", "25006"}


class DatabaseUnavailable(psycopg.OperationalError):
    """The database cannot serve this request now (down, or the primary moved)."""


def is_connection_failure(exc: BaseException) -> bool:
    """True for errors where the server (not the request) is the problem."""
    if isinstance(exc, DatabaseUnavailable | PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = getattr(exc, "sqlstate", None)
    if state is None:
        # No SQLSTATE: libpq lost or could not make the connection.
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return state in _FAILOVER_STATES or state.startswith("08")


class DatabaseState:
    """Circuit and readiness record, one per worker."""

    def __init__(self, open_seconds: float = 0.5) -> None:
        self.open_seconds = open_seconds
        self.available = False  # circuit closed: requests go to the pool
        self.ever_reached = False
        self.pending: list[str] | None = None  # None: never learnt
        self.last_contact: float | None = None  # monotonic
        self.last_error = "not contacted yet"
        self.unavailable_since: float | None = time.monotonic()
        self.wake = asyncio.Event()
        self._gauge()

    def _gauge(self) -> None:
        metrics.DB_AVAILABLE.labels("primary").set(1 if self.available else 0)

    def guard(self) -> None:
        """Raises DatabaseUnavailable at once while the circuit is open."""
        if not self.available:
            since = self.unavailable_since or time.monotonic()
            raise DatabaseUnavailable(
                f"database unavailable for {time.monotonic() - since:.1f}s: {self.last_error}"
            )

    def failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0]
        if self.available:
            log.warning("database unavailable: %s", self.last_error)
            self.available = False
            self.unavailable_since = time.monotonic()
            metrics.DB_CIRCUIT_OPENED.labels(type(exc).__name__).inc()
            self._gauge()
            self.wake.set()  # probe at once (only on the change: no busy loop)

    def reached(self, applied: set[str]) -> None:
        """A successful contact: the migrations this release needs, as applied now."""
        self.pending = [v for v in known_versions() if v not in applied]
        self.ever_reached = True
        self.last_contact = time.monotonic()
        if not self.available:
            down = time.monotonic() - (self.unavailable_since or time.monotonic())
            log.warning("database available again after %.1fs", down)
            self.available = True
            self.unavailable_since = None
            self._gauge()

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body without version) for /ready."""
        if not self.ever_reached:
            return 503, {
                "status": "not_ready",
                "reason": "database never reached since start: " + self.last_error,
            }
        if self.pending:
            return 503, {
                "status": "not_ready",
                "reason": "database migrations pending: " + ", ".join(self.pending),
                "pending_migrations": self.pending,
            }
        if self.available:
            return 200, {"status": "ready"}
        since = time.monotonic() - (self.unavailable_since or time.monotonic())
        ago = time.monotonic() - (self.last_contact or time.monotonic())
        return 200, {
            "status": "degraded",
            "reason": (
                f"database unreachable for {since:.1f}s ({self.last_error}); migrations were"
                f" current {ago:.1f}s ago; serving cached reads, writes answer 503"
            ),
        }


_DRAINS: set[asyncio.Task] = set()  # keeps the drain tasks referenced until done


class GuardedPool(AsyncConnectionPool):
    """A pool that fails fast while the circuit is open and reports connection failures."""

    state: DatabaseState

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[AsyncConnection]:
        self.state.guard()
        try:
            async with super().connection(timeout) as conn:
                try:
                    yield conn
                except psycopg.Error as exc:
                    if is_connection_failure(exc) and not conn.closed:
                        # The server is read-only or shutting down: do not reuse this one.
                        await conn.close()
                    raise
        except (psycopg.Error, PoolTimeout) as exc:
            if not is_connection_failure(exc):
                raise
            self.state.failed(exc)
            if getattr(exc, "sqlstate", None) == "25006":
                # Every idle connection may point at the demoted server: reconnect all.
                task = asyncio.get_running_loop().create_task(self.drain())
                _DRAINS.add(task)
                task.add_done_callback(_DRAINS.discard)
            if isinstance(exc, DatabaseUnavailable):
                raise
            raise DatabaseUnavailable(f"database unavailable: {self.state.last_error}") from exc

    async def _connect(self, timeout: float | None = None) -> AsyncConnection:
        # The pool's own (re)connect attempts report to the circuit too, so an outage is
        # noticed by the first failed attempt, not by the first request that times out.
        # (psycopg_pool 3.3 internal, pinned in requirements.lock.)
        try:
            return await super()._connect(timeout)
        except psycopg.Error as exc:
            self.state.failed(exc)
            raise


async def read_applied(conn: AsyncConnection) -> set[str]:
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    found = await cur.fetchone()
    present = found[0] if isinstance(found, tuple) else next(iter(found.values()))
    if not present:
        return set()
    cur = await conn.execute("SELECT version FROM schema_migrations")
    rows = await cur.fetchall()
    return {row[0] if isinstance(row, tuple) else row["version"] for row in rows}


class Prober:
    """Background task: reaches a read-write server on its own connection."""

    def __init__(
        self,
        pool: GuardedPool,
        url: str,
        kwargs: dict[str, Any],
        *,
        deadline: float,
        interval_closed: float = 5.0,
        interval_open: float = 0.5,
    ) -> None:
        self.pool = pool
        self.state = pool.state
        self.url = url
        self.kwargs = kwargs
        self.deadline = deadline
        self.interval_closed = interval_closed
        self.interval_open = interval_open

    async def probe(self) -> bool:
        was_available = self.state.available
        try:
            async with asyncio.timeout(self.deadline):
                conn = await AsyncConnection.connect(self.url, autocommit=True, **self.kwargs)
                try:
                    applied = await read_applied(conn)
                finally:
                    await conn.close()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            metrics.DB_PROBES.labels("error").inc()
            self.state.failed(exc if not isinstance(exc, TimeoutError) else TimeoutError("probe"))
            return False
        metrics.DB_PROBES.labels("ok").inc()
        self.state.reached(applied)
        if not was_available:
            # Connections from before the outage may be dead or on a demoted server;
            # check() also regrows the pool at once instead of after its reconnect backoff.
            await self.pool.drain()
            await self.pool.check()
        return True

    async def run(self) -> None:
        while True:
            self.state.wake.clear()
            await self.probe()
            await asyncio.sleep(0.05)  # a refused connect may not yield: never spin
            interval = self.interval_closed if self.state.available else self.interval_open
            try:
                async with asyncio.timeout(interval):
                    await self.state.wake.wait()
            except TimeoutError:
                pass


async def retry_write(
    state: DatabaseState,
    operation: Callable[[], Awaitable[T]],
    budget_seconds: float,
    first_delay: float = 0.1,
    max_delay: float = 1.0,
) -> T:
    """Runs an idempotent write; retries it while the database fails over.

    Retries only connection-level failures (see is_connection_failure), with exponential
    backoff, for at most budget_seconds in total; then the last DatabaseUnavailable goes
    to the client as 503 + Retry-After. The budget counts from the start of the outage,
    not of the request: a failover (seconds) is ridden through, while during a long
    outage writes answer 503 at once instead of each holding a connection slot.
    """
    deadline = time.monotonic() + budget_seconds
    if state.unavailable_since is not None and state.ever_reached:
        deadline = min(deadline, state.unavailable_since + budget_seconds)
    delay = first_delay
    attempt = 0
    while True:
        try:
            result = await operation()
        except (psycopg.Error, PoolTimeout) as exc:
            if not is_connection_failure(exc):
                raise
            if attempt:
                metrics.DB_WRITE_RETRIES.labels("failed").inc()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                metrics.DB_WRITE_RETRIES.labels("exhausted").inc()
                raise
            # While the circuit is open, wait for the probe instead of spinning.
            wait_until = time.monotonic() + min(delay, remaining)
            await asyncio.sleep(max(0.0, wait_until - time.monotonic()))
            while not state.available and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            delay = min(delay * 2, max_delay)
            attempt += 1
            continue
        if attempt:
            metrics.DB_WRITE_RETRIES.labels("succeeded").inc()
        return result
