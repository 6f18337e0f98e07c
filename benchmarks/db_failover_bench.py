#!/usr/bin/env python3
"""Benchmark of the registry service's database high availability (figures, not a test).

On loopback, with private PostgreSQL servers (ports 55448 and 55449) and the real
service (1 worker):
  outage:   PostgreSQL stopped. Latency of /ready, of a cached read, of an uncached read
            and of a delete (both 503) and of a register (503 after the retry budget
            counted from the outage start).
  failover: the primary goes read-only while a writer registers a new subject every
            20 ms, then its streaming standby (replayed) is promoted. Seconds of write
            unavailability (longest register latency), failed writes, acknowledged writes
            missing on the new primary, retries counted by the service.
Saves the figures to benchmarks/results/db_failover_bench.json.

    service/scripts/dev-venv.sh && service/scripts/test-services.sh start
    service/.venv/bin/python benchmarks/db_failover_bench.py
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "service" / "tests"))

from helpers import OwnPostgres, Server, auth, cli, database_url, write_config  # noqa: E402

CHAT = {"type": "object", "properties": {"prompt": {"type": "string"}}}
PRIMARY_PORT, STANDBY_PORT = 55448, 55449


def migrate(url: str) -> None:
    result = cli("migrate", env={"DATABASE_URL": url})
    if result.returncode != 0:
        raise SystemExit(f"migrate failed: {result.stderr}")


def timed(call) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    answer = call()
    return (time.perf_counter() - started) * 1000, answer


def register(http: httpx.Client, subject: str) -> httpx.Response:
    body = {"subject": subject, "schema": CHAT, "schema_type": "json"}
    return http.post("/api/v1/schemas", json=body, headers=auth())


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "max_ms": round(ordered[-1], 2),
        "n": len(ordered),
    }


def outage() -> dict:
    postgres = OwnPostgres(port=PRIMARY_PORT)
    server = None
    try:
        postgres.start()
        url = database_url(postgres.admin_url, "postgres")
        migrate(url)
        folder = Path(tempfile.mkdtemp(prefix="sr-bench-"))
        server = Server(write_config(folder, url, None)).start()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            kept = register(http, "bench.outage.kept").json()["id"]
            http.get(f"/api/v1/schemas/{kept}")
            postgres.stop()
            stopped = time.monotonic()
            first_ready = timed(lambda: http.get("/ready"))
            ready = [timed(lambda: http.get("/ready"))[0] for _ in range(20)]
            cached = [timed(lambda: http.get(f"/api/v1/schemas/{kept}"))[0] for _ in range(50)]
            uncached, not_503 = [], 0
            for index in range(50):
                ms, answer = timed(
                    lambda i=index: http.get(f"/api/v1/schemas/00000000-0000-0000-0000-{i:012d}")
                )
                uncached.append(ms)
                not_503 += answer.status_code != 503
            deletes = [
                timed(lambda: http.delete(f"/api/v1/schemas/{kept}", headers=auth()))[0]
                for _ in range(20)
            ]
            reg_ms, reg = timed(lambda: register(http, "bench.outage.lost"))
            return {
                "first_ready_after_stop_ms": round(first_ready[0], 2),
                "first_ready_status": first_ready[1].json()["status"],
                "ready_ms": summary(ready),
                "cached_read_200_ms": summary(cached),
                "uncached_read_503_ms": summary(uncached),
                "uncached_read_not_503": not_503,
                "delete_503_ms": summary(deletes),
                "register_ms": round(reg_ms, 2),
                "register_status": reg.status_code,
                "register_seconds_after_outage_start": round(time.monotonic() - stopped, 2),
            }
    finally:
        if server is not None:
            server.stop()
        postgres.destroy()


def retry_counts(server: Server) -> dict[str, float]:
    text = httpx.get(server.metrics_url).text
    pattern = r'^schema_registry_db_write_retries_total\{outcome="(\w+)"\} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.MULTILINE)}


def failover() -> dict:
    primary, standby = OwnPostgres(port=PRIMARY_PORT), OwnPostgres(port=STANDBY_PORT)
    server = None
    try:
        primary.start()
        primary_url = database_url(primary.admin_url, "postgres")
        migrate(primary_url)
        standby.standby_of(primary).start()
        standby_url = database_url(standby.admin_url, "postgres")
        url = (
            f"postgresql://postgres@127.0.0.1:{PRIMARY_PORT},127.0.0.1:{STANDBY_PORT}"
            "/postgres?target_session_attrs=read-write"
        )
        folder = Path(tempfile.mkdtemp(prefix="sr-bench-"))
        server = Server(write_config(folder, url, None)).start()
        acked, failed, latencies = [], [], []
        stop = threading.Event()

        def writer() -> None:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                index = 0
                while not stop.is_set():
                    ms, answer = timed(lambda i=index: register(http, f"bench.failover.s{i}"))
                    latencies.append((time.monotonic(), ms))
                    if answer.status_code in (200, 201):
                        acked.append(answer.json()["id"])
                    else:
                        failed.append(answer.status_code)
                    index += 1
                    time.sleep(0.02)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(2)
        demoted = time.monotonic()
        with psycopg.connect(primary_url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        with psycopg.connect(standby_url, autocommit=True) as conn:
            while not conn.execute(
                "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
            ).fetchone()[0]:
                time.sleep(0.01)
            conn.execute("SELECT pg_promote(true, 30)")
        promoted = time.monotonic()
        time.sleep(3)
        stop.set()
        thread.join(timeout=90)
        retries = retry_counts(server)
        with psycopg.connect(standby_url) as conn:
            stored = {str(r[0]) for r in conn.execute("SELECT id FROM schemas").fetchall()}
        return {
            "promote_after_demote_s": round(promoted - demoted, 3),
            "writes_acked": len(acked),
            "writes_failed": len(failed),
            "acked_writes_lost": len(set(acked) - stored),
            "write_unavailability_s": round(max(ms for _, ms in latencies) / 1000, 3),
            "register_p50_ms": round(statistics.median(ms for _, ms in latencies), 2),
            "retries": retries,
        }
    finally:
        if server is not None:
            server.stop()
        standby.destroy()
        primary.destroy()


def main() -> None:
    results = {"outage": outage(), "failover": failover()}
    print(json.dumps(results, indent=2))
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "db_failover_bench.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
