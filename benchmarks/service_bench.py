"""Benchmark of the registry service (a benchmark, not a test: it prints figures only).

Starts the real service (2 workers) against the test PostgreSQL/Redis
(service/scripts/test-services.sh), loads it with wrk at 64 connections and reports
req/s, p50 and p99 for: a bare endpoint of the same stack (/livez, the floor), GET by
id served from the cache (memory tier, then Redis), GET by id from PostgreSQL (a second
instance with no cache at all), register (a new subject per request) and validate.
Saves the figures to benchmarks/results/service_bench.json.

    service/scripts/dev-venv.sh && service/scripts/test-services.sh start
    service/.venv/bin/python benchmarks/service_bench.py [--duration 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import psycopg  # from the service venv (run with service/.venv/bin/python) or system

REPO = Path(__file__).resolve().parent.parent
SERVICE = REPO / "service"
CLI = SERVICE / ".venv" / "bin" / "schema-registry"
RESULTS = REPO / "benchmarks" / "results" / "service_bench.json"
PG_ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/postgres")
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string", "maxLength": 8000},
        "model": {"type": "string", "enum": ["small", "large"]},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    },
    "required": ["prompt", "model"],
}
DATA = {"prompt": "Summarise the release notes.", "model": "small", "max_tokens": 256}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method: str, url: str, body: object = None, token: str | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


class Instance:
    """One `schema-registry serve` process with its own config file."""

    def __init__(self, folder: Path, name: str, db_url: str, redis_url: str | None, key: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "server": {"host": "127.0.0.1", "port": self.port, "workers": 2},
            "metrics": {"host": "127.0.0.1", "port": free_port()},
            "database": {"url": db_url, "pool_min": 4, "pool_max": 16},
            "auth": {
                "api_keys": [{"name": "bench", "sha256": hashlib.sha256(key.encode()).hexdigest()}]
            },
        }
        if redis_url:
            config["redis"] = {"url": redis_url}
        else:  # every GET goes to PostgreSQL: no Redis and no per-worker memory tier
            config["cache"] = {"local_ttl_seconds": 0}
        self.config = folder / f"{name}.json"  # JSON is YAML
        self.config.write_text(json.dumps(config))
        self.log = folder / f"{name}.log"
        self.multiproc = folder / f"{name}-metrics"
        self.process: subprocess.Popen | None = None

    def start(self) -> Instance:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.multiproc)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed argv
                [str(CLI), "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if http("GET", self.url + "/ready")["status"] == "ready":
                    return self
            time.sleep(0.2)
        raise RuntimeError(f"service did not become ready, see {self.log}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)


def wrk(url: str, script: Path | None, duration: int, connections: int) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script:
        command += ["-s", str(script)]
    done = subprocess.run(  # noqa: S603 - wrk, fixed options, our own loopback URLs
        [*command, url], capture_output=True, text=True, check=True
    )
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latencies = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "requests_per_second": rps,
        "p50_ms": to_ms(latencies["50"]),
        "p99_ms": to_ms(latencies["99"]),
        "requests": total,
        "non_2xx": int(failed.group(1)) if failed else 0,
        "socket_errors": errors.group(1) if errors else None,
    }


def to_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 3)


def lua_post(folder: Path, name: str, path: str, body: str, token: str) -> Path:
    script = folder / f"{name}.lua"
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
        f'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f'wrk.path = "{path}"\n'
    )
    return script


def lua_register(folder: Path, token: str, run: str) -> Path:
    """Each request registers a new subject: 201 every time, no compatibility short-cut."""
    schema = json.dumps(SCHEMA)
    script = folder / "register.lua"
    script.write_text(
        "local threads = 0\n"
        "function setup(thread) threads = threads + 1; thread:set('tid', threads) end\n"
        "local n = 0\n"
        "function request()\n"
        "  n = n + 1\n"
        f'  local body = string.format(\'{{"subject":"bench.{run}.t%d.s%d",\''
        f' .. \'"schema_type":"json","schema":{schema}}}\', tid, n)\n'
        '  return wrk.format("POST", "/api/v1/schemas", {["Content-Type"]="application/json",'
        f' ["Authorization"]="Bearer {token}"}}, body)\n'
        "end\n"
    )
    return script


def lua_rotate(folder: Path, ids: list[str]) -> Path:
    """GET by id over many ids, so the database (not one hot row) answers."""
    script = folder / "rotate.lua"
    listing = ",".join(f'"{i}"' for i in ids)
    script.write_text(
        f"local ids = {{{listing}}}\nlocal n = 0\n"
        "function request()\n  n = n + 1\n"
        '  return wrk.format("GET", "/api/v1/schemas/" .. ids[(n % #ids) + 1])\nend\n'
    )
    return script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not CLI.exists() or not shutil.which("wrk"):
        print("needs service/.venv (service/scripts/dev-venv.sh) and wrk", file=sys.stderr)
        return 2
    subprocess.run(  # noqa: S603 - our own script
        [str(SERVICE / "scripts" / "test-services.sh"), "start"], check=True, capture_output=True
    )
    run = secrets.token_hex(4)
    db_name = f"sr_bench_{run}"
    token = secrets.token_hex(16)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + db_name
    folder = Path(tempfile.mkdtemp(prefix="service-bench-"))
    instances: list[Instance] = []
    try:
        subprocess.run(  # noqa: S603 - our own CLI
            [str(CLI), "migrate"],
            env={**os.environ, "DATABASE_URL": db_url},
            check=True,
            capture_output=True,
        )
        cached = Instance(folder, "cached", db_url, REDIS, token).start()
        instances.append(cached)
        uncached = Instance(folder, "uncached", db_url, None, token).start()
        instances.append(uncached)
        ids = []
        for index in range(200):
            created = http(
                "POST",
                cached.url + "/api/v1/schemas",
                {
                    "subject": f"bench.seed{index}.chat",
                    "schema_type": "json",
                    "schema": SCHEMA,
                },
                token,
            )
            ids.append(created["id"])
        hot = ids[0]
        http("GET", f"{cached.url}/api/v1/schemas/{hot}")  # warm Redis
        scenarios = {
            "floor_livez": (cached.url + "/livez", None),
            "get_by_id_cached": (f"{cached.url}/api/v1/schemas/{hot}", None),
            "get_by_id_uncached": (uncached.url + "/", lua_rotate(folder, ids)),
            "register": (cached.url + "/", lua_register(folder, token, run)),
            "validate": (
                cached.url + "/",
                lua_post(folder, "validate", f"/api/v1/validate/{hot}", json.dumps(DATA), token),
            ),
        }
        results = {}
        for name, (url, script) in scenarios.items():
            results[name] = wrk(url, script, args.duration, args.connections)
            print(
                f"{name:20s} {results[name]['requests_per_second']:9.0f} req/s  "
                f"p50 {results[name]['p50_ms']:8.2f} ms  p99 {results[name]['p99_ms']:8.2f} ms"
                f"  non-2xx {results[name]['non_2xx']}"
            )
        ratio = (
            results["get_by_id_cached"]["requests_per_second"]
            / results["floor_livez"]["requests_per_second"]
        )
        print(f"cached GET / floor = {ratio:.2f} (target >= 0.50)")
        report = {
            "benchmark": "service_bench",
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_average_at_end": os.getloadavg(),
            },
            "settings": {
                "workers": 2,
                "connections": args.connections,
                "duration_seconds": args.duration,
                "load_generator": "wrk -t2 (on the same 2 cores as the service)",
            },
            "results": results,
            "cached_get_to_floor_ratio": round(ratio, 3),
            "target_ratio": 0.5,
        }
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"saved {RESULTS}")
    finally:
        for instance in instances:
            instance.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
