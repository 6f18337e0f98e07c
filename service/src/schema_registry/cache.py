"""Two-tier read cache for schemas by id; cache failures never fail a request.

Tier "memory": a small per-worker LRU with a short TTL (cache.local_ttl_seconds, default
1 s, 0 turns it off) that saves the Redis round trip for hot ids. Tier "redis": key
schema:{id}, TTL redis.ttl_seconds. A change (delete) evicts both tiers and is
published on a Redis channel so every worker of every instance evicts its memory tier
at once; if Redis is down, the memory TTL bounds how long another worker may still
serve the old entry. After a Redis error Redis is skipped for a short back-off, so a
dead Redis costs one timeout per back-off period instead of one per request.

With redis.sentinels, the master is found through Redis Sentinel (redis-py's Sentinel):
every new connection asks the sentinels for the current master, and a connection to a
master that was demoted or died is dropped, so the cache follows a failover by itself.
The URL still gives the ACL user, password and database; its host and port are unused.

TLS: a rediss:// URL. The server's certificate is always checked against
redis.tls_ca_file (else the system's CAs) and must name the address connected to; with
sentinels, the sentinels and the master they name are both reached with TLS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import redis.asyncio as redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from schema_registry import metrics

log = logging.getLogger("schema_registry.cache")
_BACKOFF_SECONDS = 2.0
INVALIDATION_CHANNEL = "schema_registry:invalidate"


class LocalCache:
    """Per-worker LRU of response bodies with a TTL (monotonic clock)."""

    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, body: bytes) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (time.monotonic() + self.ttl, body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def evict(self, key: str) -> None:
        self._entries.pop(key, None)


def _no_retry() -> Retry:
    """redis-py retries a failed command 10 times with backoff by default: a dead host
    then holds a read for many seconds. The cache is optional: fail at once, back off."""
    return Retry(NoBackoff(), 0)


def tls_options(url: str, ca_file: str | None) -> dict[str, object]:
    """redis-py options of a verified TLS connection for a rediss:// URL, else none.
    Verification is not optional: certificate chain and host name, always."""
    if not url.startswith("rediss://"):
        return {}
    return {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": ca_file,
    }


def _sentinel_client(
    url: str,
    timeout: float,
    *,
    sentinels: tuple[tuple[str, int], ...],
    master: str,
    username: str | None,
    password: str | None,
    tls_ca_file: str | None = None,
) -> redis.Redis:
    """A client of the current master of `master`, as the sentinels name it."""
    parsed = parse_url(url)
    auth = {k: parsed[k] for k in ("username", "password", "db") if k in parsed}  # type: ignore[literal-required]
    sockets = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel_auth = {"username": username, "password": password} if password else {}
    # rediss://: TLS to the sentinels (ssl=True there) and to the master (ssl=True picks
    # SentinelManagedSSLConnection), both verified.
    tls = tls_options(url, tls_ca_file)
    ssl = {"ssl": True, **tls} if tls else {}
    manager = Sentinel(
        list(sentinels),
        sentinel_kwargs={**sockets, **sentinel_auth, **ssl, "retry": _no_retry()},
        retry_on_timeout=False,
        retry=_no_retry(),
        **sockets,
        **ssl,
        **auth,
    )
    return manager.master_for(master)


class SchemaCache:
    def __init__(
        self,
        url: str | None,
        ttl_seconds: int,
        timeout: float,
        local_ttl_seconds: float = 1.0,
        local_max_entries: int = 10000,
        *,
        sentinels: tuple[tuple[str, int], ...] = (),
        sentinel_master: str = "registry",
        sentinel_username: str | None = None,
        sentinel_password: str | None = None,
        tls_ca_file: str | None = None,
    ) -> None:
        self.ttl = ttl_seconds
        self.local = LocalCache(local_ttl_seconds, local_max_entries)
        self.enabled = url is not None
        self._down_until = 0.0
        self._bound = 2 * timeout  # socket timeouts apply per connection step
        self._client: redis.Redis | None = None
        if url and sentinels:
            self._client = _sentinel_client(
                url,
                timeout,
                sentinels=sentinels,
                master=sentinel_master,
                username=sentinel_username,
                password=sentinel_password,
                tls_ca_file=tls_ca_file,
            )
        elif url:
            self._client = redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry_on_timeout=False,
                retry=_no_retry(),
                **tls_options(url, tls_ca_file),
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
        local = self.local.get(schema_id)
        if local is not None:
            metrics.CACHE_OPERATIONS.labels("get", "memory", "hit").inc()
            return local
        if not self._usable():
            metrics.CACHE_OPERATIONS.labels("get", "redis", "skipped").inc()
            return None
        try:
            # One bound for the whole call, master discovery through Sentinel included.
            value = await asyncio.wait_for(self._client.get(self.key(schema_id)), self._bound)
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            metrics.CACHE_OPERATIONS.labels("get", "redis", "error").inc()
            return None
        metrics.REDIS_OPERATIONS.labels("get", "ok").inc()
        metrics.CACHE_OPERATIONS.labels("get", "redis", "hit" if value else "miss").inc()
        if value is not None:
            self.local.put(schema_id, value)
        return value

    async def set(self, schema_id: str, body: bytes) -> None:
        self.local.put(schema_id, body)
        if not self._usable():
            return
        try:
            await asyncio.wait_for(
                self._client.set(self.key(schema_id), body, ex=self.ttl), self._bound
            )
        except (RedisError, OSError) as exc:
            self._failed("set", exc)
            return
        metrics.REDIS_OPERATIONS.labels("set", "ok").inc()
        metrics.CACHE_OPERATIONS.labels("set", "redis", "ok").inc()

    async def invalidate(self, schema_id: str) -> bool:
        """Evicts both tiers everywhere; tries Redis even during back-off (stale is worse)."""
        self.local.evict(schema_id)
        if self._client is None:
            return True
        try:
            await self._client.delete(self.key(schema_id))
            await self._client.publish(INVALIDATION_CHANNEL, schema_id)
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

    async def listen_invalidations(self) -> None:
        """Evicts ids that other workers changed; reconnects after Redis comes back."""
        if self._client is None:
            return
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(INVALIDATION_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.local.evict(message["data"].decode())
            except (RedisError, OSError) as exc:
                log.debug("invalidation listener lost redis: %s", exc)
            await asyncio.sleep(_BACKOFF_SECONDS)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
