"""Redis and PostgreSQL stopped mid-test (private instances, not the shared ones)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from helpers import OwnPostgres, OwnRedis, Server, auth, cli, database_url, write_config

CHAT = {"type": "object", "properties": {"prompt": {"type": "string"}}}


@pytest.fixture
def stack(tmp_path) -> Iterator[tuple[OwnPostgres, OwnRedis, Server, str]]:
    postgres, cache = OwnPostgres(), OwnRedis()
    server = None
    try:
        postgres.start()
        cache.start()
        url = database_url(postgres.admin_url, "postgres")
        assert cli("migrate", env={"DATABASE_URL": url}).returncode == 0
        server = Server(
            write_config(
                tmp_path,
                url,
                cache.url,
                database={
                    "connect_timeout_seconds": 1.0,
                    "pool_timeout_seconds": 1.0,
                    "write_retry_seconds": 2.0,
                },
            )
        ).start()
        yield postgres, cache, server, url
    finally:
        if server is not None:
            server.stop()
        cache.destroy()
        postgres.destroy()


def register(http: httpx.Client, subject: str) -> httpx.Response:
    body = {"subject": subject, "schema": CHAT, "schema_type": "json"}
    return http.post("/api/v1/schemas", json=body, headers=auth())


def test_redis_down_reads_still_succeed_and_health_is_degraded(stack):
    _, cache, server, _ = stack
    with httpx.Client(base_url=server.url, timeout=10) as http:
        cached_id = register(http, "llm.cache.a").json()["id"]
        assert http.get(f"/api/v1/schemas/{cached_id}").status_code == 200  # now in Redis
        cache.stop()
        assert http.get(f"/api/v1/schemas/{cached_id}").status_code == 200
        new = register(http, "llm.cache.b")
        assert new.status_code == 201
        assert http.get(f"/api/v1/schemas/{new.json()['id']}").status_code == 200
        health = http.get("/health").json()
        assert health["status"] == "degraded"
        assert health["components"]["redis"]["status"] == "down"
        assert health["components"]["database"]["status"] == "up"
        assert http.get("/ready").status_code == 200


def test_postgres_down_ready_degraded_cached_reads_200_writes_503(stack):
    postgres, _, server, url = stack
    with httpx.Client(base_url=server.url, timeout=15) as http:
        kept_id = register(http, "llm.pg.kept").json()["id"]
        http.get(f"/api/v1/schemas/{kept_id}")  # cached: still served without the database
        postgres.stop()
        # /ready stays 200 (HAProxy keeps the instance: it can still serve cached reads),
        # says degraded and why; /health names the component.
        deadline = time.monotonic() + 30
        ready = http.get("/ready")
        while ready.json()["status"] != "degraded" and time.monotonic() < deadline:
            time.sleep(0.2)
            ready = http.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "degraded"
        assert "database unreachable" in ready.json()["reason"]
        assert ready.json()["version"]
        health = http.get("/health").json()
        assert health["status"] == "degraded"
        assert health["components"]["database"]["status"] == "down"
        write = register(http, "llm.pg.lost")
        assert write.status_code == 503
        assert write.json()["error_code"] == "DATABASE_UNAVAILABLE"
        assert write.json()["request_id"]
        assert write.headers["retry-after"].isdigit()
        delete = http.delete(f"/api/v1/schemas/{kept_id}", headers=auth())
        assert delete.status_code == 503
        assert delete.headers["retry-after"].isdigit()
        assert http.get(f"/api/v1/schemas/{kept_id}").status_code == 200
        uncached = http.get(f"/api/v1/schemas/{uuid.uuid4()}")
        assert uncached.status_code == 503
        assert uncached.headers["retry-after"].isdigit()
        assert http.get("/api/v1/subjects").status_code == 503
        metrics = httpx.get(server.metrics_url).text
        assert 'schema_registry_db_available{role="primary"} 0.0' in metrics
        postgres.start()
        deadline = time.monotonic() + 30
        while http.get("/ready").json()["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert http.get("/ready").json()["status"] == "ready"
        assert http.get("/api/v1/subjects").status_code == 200
        after = httpx.get(server.metrics_url).text
        assert 'schema_registry_db_available{role="primary"} 1.0' in after
    with psycopg.connect(url) as conn:
        subjects = [r[0] for r in conn.execute("SELECT subject FROM schemas").fetchall()]
        states = [r[0] for r in conn.execute("SELECT state FROM schemas").fetchall()]
        events = conn.execute("SELECT count(*) FROM schema_events").fetchone()[0]
    assert subjects == ["llm.pg.kept"]
    assert states == ["ACTIVE"]
    assert events == 1


def test_ready_is_503_until_the_database_was_reached_once(tmp_path):
    postgres = OwnPostgres()
    server = None
    try:
        postgres.start()
        url = database_url(postgres.admin_url, "postgres")
        assert cli("migrate", env={"DATABASE_URL": url}).returncode == 0
        postgres.stop()
        server = Server(
            write_config(tmp_path, url, None, database={"connect_timeout_seconds": 1.0})
        ).start()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/livez").status_code == 200
            before = http.get("/ready")
            assert before.status_code == 503
            assert "never reached" in before.json()["reason"]
            postgres.start()
            deadline = time.monotonic() + 30
            while http.get("/ready").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.3)
            after = http.get("/ready")
            assert after.status_code == 200
            assert after.json()["status"] == "ready"
    finally:
        if server:
            server.stop()
        postgres.destroy()


def test_ready_is_503_until_migrations_are_applied(tmp_path):
    postgres = OwnPostgres()
    server = None
    try:
        postgres.start()
        url = database_url(postgres.admin_url, "postgres")
        server = Server(write_config(tmp_path, url, None)).start()
        with httpx.Client(base_url=server.url, timeout=10) as http:
            before = http.get("/ready")
            assert before.status_code == 503
            assert "0001_initial" in before.json()["pending_migrations"]
            assert http.get("/health").json()["components"]["redis"]["status"] == "disabled"
            assert cli("migrate", env={"DATABASE_URL": url}).returncode == 0
            assert http.get("/ready").status_code == 200
    finally:
        if server:
            server.stop()
        postgres.destroy()
