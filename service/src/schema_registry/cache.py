"""Redis read cache for schemas by id (key schema:{id}); failures never fail a request.

After a Redis error the cache is skipped for a short back-off, so a dead Redis costs
one timeout per back-off period instead of one per request.
"""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis
from redis.exceptions import RedisError

from schema_registry import metrics

log = logging.getLogger("schema_registry.cache")
_BACKOFF_SECONDS = 2.0


class SchemaCache:
    def __init__(self, url: str | None, ttl_seconds: int, timeout: float) -> None:
        self.ttl = ttl_seconds
        self.enabled = url is not None
        self._down_until = 0.0
        self._client = (
            redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
            )
            if url
            else None
        )

    @staticmethod
    def key(schema_id: str) -> str:
        return f"schema:{schema_id}"

    def _usable(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    def _failed(self, command: str, exc: Exception) -> None:
        self._down_until = time.monotonic() + _BACKOFF_SECONDS
        metrics.REDIS_OPERATIONS.labels(command, "error").inc()
        log.warning("redis %s failed: %s", command, exc)

    async def get(self, schema_id: str) -> bytes | None:
        if not self._usable():
            metrics.CACHE_OPERATIONS.labels("get", "redis", "skipped").inc()
            return None
        try:
            value = await self._client.get(self.key(schema_id))
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            metrics.CACHE_OPERATIONS.labels("get", "redis", "error").inc()
            return None
        metrics.REDIS_OPERATIONS.labels("get", "ok").inc()
        metrics.CACHE_OPERATIONS.labels("get", "redis", "hit" if value else "miss").inc()
        return value

    async def set(self, schema_id: str, body: bytes) -> None:
        if not self._usable():
            return
        try:
            await self._client.set(self.key(schema_id), body, ex=self.ttl)
        except (RedisError, OSError) as exc:
            self._failed("set", exc)
            return
        metrics.REDIS_OPERATIONS.labels("set", "ok").inc()
        metrics.CACHE_OPERATIONS.labels("set", "redis", "ok").inc()

    async def invalidate(self, schema_id: str) -> bool:
        """Deletes the key; tries even during back-off since a stale entry is worse."""
        if self._client is None:
            return True
        try:
            await self._client.delete(self.key(schema_id))
        except (RedisError, OSError) as exc:
            self._failed("delete", exc)
            return False
        metrics.REDIS_OPERATIONS.labels("delete", "ok").inc()
        metrics.CACHE_OPERATIONS.labels("invalidate", "redis", "ok").inc()
        return True

    async def ping(self) -> str:
        """up, down or disabled, for /health."""
        if self._client is None:
            return "disabled"
        try:
            await self._client.ping()
        except (RedisError, OSError):
            self._down_until = time.monotonic() + _BACKOFF_SECONDS
            return "down"
        self._down_until = 0.0
        return "up"

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
