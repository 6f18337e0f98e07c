"""Shared helpers: free ports, throwaway databases, running the real server."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import yaml

SERVICE_DIR = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:55432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
API_KEY = "test-key-" + uuid.uuid4().hex
# One key per scope besides API_KEY (admin, so the tests may delete permanently).
SCOPE_KEYS = {scope: f"test-{scope}-key-" + uuid.uuid4().hex for scope in ("read", "write")}
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def fresh_database(admin_url: str = PG_ADMIN_URL) -> Iterator[str]:
    name = "sr_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli(*args: str, config: Path | None = None, env: dict | None = None, stdin: str = ""):
    command = [str(SERVICE_DIR / ".venv" / "bin" / "schema-registry")]
    if not Path(command[0]).exists():
        command = [sys.executable, "-m", "schema_registry.cli"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def write_config(folder: Path, db_url: str, redis_url: str | None, **overrides) -> Path:
    import hashlib  # noqa: PLC0415

    config = {
        "server": {"host": "127.0.0.1", "port": free_port(), "workers": 1},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "database": {"url": db_url, "pool_min": 1, "pool_max": 10},
        "redis": {"url": redis_url, "timeout_seconds": 0.3},
        "auth": {
            "api_keys": [
                {
                    "name": "tests",
                    "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                    "scopes": ["admin"],
                },
                *(
                    {
                        "name": scope,
                        "sha256": hashlib.sha256(key.encode()).hexdigest(),
                        "scopes": [scope],
                    }
                    for scope, key in SCOPE_KEYS.items()
                ),
            ]
        },
        "logging": {"level": "WARNING", "access_log": False},
    }
    for section, values in overrides.items():
        config.setdefault(section, {}).update(values)
    if redis_url is None:
        config.pop("redis")
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class Server:
    """`schema-registry serve` as a real process, with its ports and log."""

    def __init__(self, config_path: Path, executable: Path | None = None) -> None:
        self.config_path = config_path
        config = yaml.safe_load(config_path.read_text())
        self.port = config["server"]["port"]
        self.metrics_port = config["metrics"]["port"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log_path = config_path.parent / "server.log"
        self.executable = executable or SERVICE_DIR / ".venv" / "bin" / "schema-registry"
        self.process: subprocess.Popen | None = None
        self.multiproc = tempfile.mkdtemp(prefix="sr-test-metrics-")

    def start(self, timeout: float = 60) -> Server:
        log = self.log_path.open("ab")
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": self.multiproc}
        for key in ("DATABASE_URL", "REDIS_URL", "SERVER_PORT", "METRICS_PORT"):
            env.pop(key, None)
        self.process = subprocess.Popen(
            [str(self.executable), "--config", str(self.config_path), "serve"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/livez", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.multiproc, ignore_errors=True)


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def reference_agreement(cases, verdicts) -> tuple[int, int, list[tuple[str, str]]]:
    """(agreeing, counted, undeclared differences) over the verdicts the reference
    registries publish for cases (corpus entries); verdicts(case) gives the backward and
    forward violations this registry finds. "published" names the only direction a
    reference gives, "reference_differs" a direction where this registry answers otherwise."""
    agree = total = 0
    undeclared = []
    for case in cases:
        backward, forward = verdicts(case)
        differs = case.get("reference_differs", "")
        for direction, found in (("backward", backward), ("forward", forward)):
            if case.get("published", direction) != direction:
                continue  # the reference publishes the other direction only
            declared = direction in differs or differs == "both"
            expected = (case[direction] == "incompatible") is not declared
            total += 1
            if bool(found) is expected:
                agree += 1
            elif not declared:
                undeclared.append((case["case"], direction))
    return agree, total, undeclared


def assert_api_verdicts(client, old_id: int, new_id: int, case: dict) -> None:
    """POST /api/v1/compatibility/check answers the corpus case's verdict in each direction."""
    for mode, key in (("BACKWARD", "backward"), ("FORWARD", "forward")):
        response = client.post(
            "/api/v1/compatibility/check",
            json={"schema_id": new_id, "compared_schema_id": old_id, "mode": mode},
            headers=auth(),
        )
        assert response.status_code == 200, response.text
        assert response.json()["is_compatible"] is (case[key] == "compatible"), response.json()


class OwnPostgres:
    """A private PostgreSQL cluster for tests that stop the database."""

    def __init__(self, port: int | None = None, options: str = "") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sr-test-pg-"))
        self.port = port or free_port()
        self.options = options
        self.data = self.dir / "data"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def standby_of(self, primary: OwnPostgres) -> OwnPostgres:
        """Makes this cluster a streaming standby of primary (pg_basebackup -R); start() next."""
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._as_pg(
            str(PG_BIN / "pg_basebackup"),
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
        )
        return self

    def _as_pg(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> OwnPostgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._as_pg(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"
            )
        self._as_pg(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "log"),
            "-w",
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            + self.options,
            "start",
        )
        return self

    def stop(self) -> None:
        self._as_pg(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_server_argv(port: int, folder: Path, *extra: str) -> list[str]:
    """redis-server on loopback at port, nothing persisted, working files in folder."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(folder),
        *extra,
    ]


class OwnRedis:
    """A private redis-server for tests that stop the cache."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sr-test-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        self.process = subprocess.Popen(
            redis_server_argv(self.port, self.dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
