"""The registry follows the PostgreSQL primary: multi-host URLs, a demoted primary and
a promoted standby, with real servers on loopback (ports 55443-55449)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
from helpers import OwnPostgres, Server, auth, cli, database_url, write_config

CHAT = {"type": "object", "properties": {"prompt": {"type": "string"}}}
DOWN_PORT = 55443  # nothing listens here: the first host of the URL refuses


def _closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _multi_url(*ports: int) -> str:
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"


def _wait_ready(http: httpx.Client, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    ready = http.get("/ready")
    while ready.json().get("status") != "ready" and time.monotonic() < deadline:
        time.sleep(0.2)
        ready = http.get("/ready")
    return ready


def _metric(server: Server, name: str, labels: str = "") -> float:
    text = httpx.get(server.metrics_url, timeout=5).text
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    found = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@contextlib.contextmanager
def _servers(*servers: OwnPostgres) -> Iterator[None]:
    try:
        yield
    finally:
        for pg in servers:
            pg.destroy()


def test_multi_host_url_skips_a_refusing_and_a_read_only_host(tmp_path):
    assert _closed(DOWN_PORT), f"port {DOWN_PORT} must be free for this test"
    read_only = OwnPostgres(port=55444, options="-c default_transaction_read_only=on")
    writable = OwnPostgres(port=55445)
    server = None
    with _servers(read_only, writable):
        read_only.start()
        writable.start()
        rw_url = database_url(writable.admin_url, "postgres")
        assert cli("migrate", env={"DATABASE_URL": rw_url}).returncode == 0
        url = _multi_url(DOWN_PORT, read_only.port, writable.port)
        try:
            server = Server(
                write_config(tmp_path, url, None, database={"connect_timeout_seconds": 1.0})
            ).start()
            with httpx.Client(base_url=server.url, timeout=20) as http:
                assert _wait_ready(http).status_code == 200
                ids = []
                for index in range(3):
                    body = {"subject": f"llm.multi.s{index}", "schema": CHAT, "schema_type": "json"}
                    created = http.post("/api/v1/schemas", json=body, headers=auth())
                    assert created.status_code == 201, created.text
                    ids.append(created.json()["id"])
                assert http.get(f"/api/v1/schemas/{ids[0]}").status_code == 200
        finally:
            if server is not None:
                server.stop()
        with psycopg.connect(rw_url) as conn:
            stored = {str(r[0]) for r in conn.execute("SELECT id FROM schemas").fetchall()}
        assert stored == set(ids)
        with psycopg.connect(database_url(read_only.admin_url, "postgres")) as conn:
            missing = conn.execute("SELECT to_regclass('schemas')").fetchone()[0]
        assert missing is None  # nothing went to the read-only server


class Writer(threading.Thread):
    """Registers new subjects in a loop and logs every acknowledged write."""

    def __init__(self, base_url: str) -> None:
        super().__init__(daemon=True)
        self.base_url = base_url
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.failed: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            index = 0
            while not self.stop.is_set():
                body = {"subject": f"llm.failover.s{index}", "schema": CHAT, "schema_type": "json"}
                try:
                    answer = http.post("/api/v1/schemas", json=body, headers=auth())
                except httpx.HTTPError as exc:
                    self.failed.append(repr(exc))
                else:
                    if answer.status_code in (200, 201):
                        self.acked.append(answer.json()["id"])
                    else:
                        self.failed.append(f"{answer.status_code} {answer.text[:200]}")
                index += 1
                time.sleep(0.02)


def _wait_replayed(primary_url: str, standby_url: str, timeout: float = 30) -> None:
    with psycopg.connect(primary_url, autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with psycopg.connect(standby_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            caught_up = conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)
            ).fetchone()[0]
            if caught_up:
                return
            time.sleep(0.05)
    raise AssertionError("the standby did not replay the primary's WAL in time")


def test_primary_demoted_and_standby_promoted_mid_run_no_acknowledged_write_lost(tmp_path):
    primary = OwnPostgres(port=55446)
    standby = OwnPostgres(port=55447)
    server = None
    writer = None
    with _servers(standby, primary):
        primary.start()
        primary_url = database_url(primary.admin_url, "postgres")
        assert cli("migrate", env={"DATABASE_URL": primary_url}).returncode == 0
        standby.standby_of(primary).start()
        standby_url = database_url(standby.admin_url, "postgres")
        url = _multi_url(primary.port, standby.port)
        try:
            server = Server(
                write_config(
                    tmp_path,
                    url,
                    None,
                    database={"connect_timeout_seconds": 1.0, "pool_timeout_seconds": 2.0},
                )
            ).start()
            with httpx.Client(base_url=server.url, timeout=20) as http:
                assert _wait_ready(http).status_code == 200
            writer = Writer(server.url)
            writer.start()
            time.sleep(1.5)
            before = len(writer.acked)
            assert before > 0, writer.failed
            # The primary goes read-only (what a demoted primary is), writes continue...
            with psycopg.connect(primary_url, autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
                conn.execute("SELECT pg_reload_conf()")
            time.sleep(1.0)
            # ...then the standby, having replayed everything, is promoted.
            _wait_replayed(primary_url, standby_url)
            with psycopg.connect(standby_url, autocommit=True) as conn:
                assert conn.execute("SELECT pg_promote(true, 30)").fetchone()[0]
            deadline = time.monotonic() + 30
            while len(writer.acked) < before + 20 and time.monotonic() < deadline:
                time.sleep(0.2)
            writer.stop.set()
            writer.join(timeout=60)
            assert not writer.failed, writer.failed[:5]
            assert len(writer.acked) >= before + 20, "writes did not resume after promotion"
            retried = _metric(
                server, "schema_registry_db_write_retries_total", 'outcome="succeeded"'
            )
            assert retried >= 1
            assert _metric(server, "schema_registry_db_available", 'role="primary"') == 1.0
        finally:
            if writer is not None:
                writer.stop.set()
            if server is not None:
                server.stop()
        with psycopg.connect(standby_url) as conn:
            stored = {str(r[0]) for r in conn.execute("SELECT id FROM schemas").fetchall()}
        lost = set(writer.acked) - stored
        assert not lost, f"{len(lost)} acknowledged writes are not on the new primary"
