"""The `schema-registry` command: serve, migrate [--status], check-config, hash-key, version."""

from __future__ import annotations

import argparse
import ctypes
import getpass
import hashlib
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from schema_registry._version import BROKEN, __version__
from schema_registry.config import CONFIG_ENV, Config, load_config, redact_url
from schema_registry.errors import ConfigError

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set by `serve` for its uvicorn workers: the pid of the process that must outlive them.
PARENT_PID_ENV = "SCHEMA_REGISTRY_SERVE_PID"
_PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """Make this process get ``sig`` when its parent dies (Linux PR_SET_PDEATHSIG).

    A worker whose main process was killed hard (SIGKILL, and systemd could not kill the
    rest of the control group) would otherwise live on holding the port, and every
    restart would fail with "Address already in use". If the parent is gone already
    (it died before this call), the signal is sent at once. Returns whether the death
    signal is armed (False off Linux or when this process is the parent itself)."""
    if parent_pid <= 0 or parent_pid == os.getpid() or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return True


def worker_app() -> Any:
    """uvicorn's app factory for `serve`: arms the parent-death signal in each worker,
    then builds the app (schema_registry.app.create_app)."""
    exit_with_parent(int(os.environ.get(PARENT_PID_ENV, "0") or 0))
    from schema_registry.app import create_app  # noqa: PLC0415 - in the worker only

    return create_app()


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"schema-registry: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _prepare_multiproc_dir(config: Config) -> str:
    """A clean folder shared by the workers' metric files (set before prometheus import)."""
    folder = config.metrics_multiproc_dir or os.environ.get(_MULTIPROC_ENV)
    if not folder:
        folder = tempfile.mkdtemp(prefix="schema-registry-metrics-")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[_MULTIPROC_ENV] = str(path)
    return str(path)


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.config:
        # Workers are fresh processes: they find the same file through the environment.
        os.environ[CONFIG_ENV] = str(Path(args.config).resolve())
    _prepare_multiproc_dir(config)

    import uvicorn  # noqa: PLC0415 - imported after PROMETHEUS_MULTIPROC_DIR is set
    from prometheus_client import CollectorRegistry  # noqa: PLC0415
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    from schema_registry import logs, metrics, metrics_server  # noqa: PLC0415

    logs.setup(config.log_level)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    metrics_server.start(
        config.metrics_port,
        config.metrics_host,
        registry,
        cert=config.metrics_tls_cert_file,
        key=config.metrics_tls_key_file,
        client_ca=config.metrics_tls_client_ca_file,
    )
    metrics.BUILD_INFO.labels(__version__, str(BROKEN).lower()).set(1)
    # Workers (separate processes when workers > 1) exit when this process dies.
    os.environ[PARENT_PID_ENV] = str(os.getpid())
    uvicorn.run(
        "schema_registry.cli:worker_app",
        factory=True,
        host=config.server_host,
        port=config.server_port,
        workers=config.workers if config.workers > 1 else None,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=config.graceful_timeout_seconds,
        backlog=2048,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg  # noqa: PLC0415 - keeps `version`/`hash-key` free of driver imports

    from schema_registry import migrations_runner  # noqa: PLC0415

    config = _load(args)
    try:
        if args.status:
            print(json.dumps(migrations_runner.status(config.database_url)))
        else:
            applied = migrations_runner.migrate(config.database_url)
            print(json.dumps({"applied_now": applied, "version": __version__}))
    except (migrations_runner.MigrationError, psycopg.Error) as exc:
        print(f"schema-registry: migrate failed: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(
        json.dumps(
            {
                "valid": True,
                "server": f"{config.server_host}:{config.server_port}",
                "metrics": f"{config.metrics_host}:{config.metrics_port}",
                "metrics_tls": bool(config.metrics_tls_cert_file),
                "workers": config.workers,
                "database_url": redact_url(config.database_url),
                "redis_url": redact_url(config.redis_url),
                "redis_sentinels": [f"{host}:{port}" for host, port in config.redis_sentinels],
                "redis_tls": bool(config.redis_url and config.redis_url.startswith("rediss://")),
                "api_keys": [key.name for key in config.api_keys],
                "api_key_scopes": {key.name: list(key.scopes) for key in config.api_keys},
                "protect_reads": config.protect_reads,
            }
        )
    )
    return 0


def cmd_hash_key(args: argparse.Namespace) -> int:
    """Reads the key from stdin (never argv, which other users can see) and prints sha256."""
    if sys.stdin.isatty():
        key = getpass.getpass("API key: ")
    else:
        key = sys.stdin.readline().rstrip("\r\n")
    if not key.strip():
        print("schema-registry: hash-key: the key is empty", file=sys.stderr)
        return 2
    print(hashlib.sha256(key.strip().encode()).hexdigest())
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    if args.json:
        from schema_registry.migrations_runner import known_versions  # noqa: PLC0415

        print(
            json.dumps({"version": __version__, "broken": BROKEN, "migrations": known_versions()})
        )
    else:
        print(__version__)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="schema-registry", description=__doc__)
    parser.add_argument("--config", help=f"YAML config file (default: ${CONFIG_ENV})", default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP API and the metrics listener")
    migrate = commands.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument(
        "--status", action="store_true", help="print {applied, pending} as JSON, change nothing"
    )
    commands.add_parser("check-config", help="validate the configuration and exit")
    commands.add_parser("hash-key", help="print the sha256 of an API key read from stdin")
    version = commands.add_parser("version", help="print the release version")
    version.add_argument("--json", action="store_true", help="version, broken flag, migrations")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": cmd_serve,
        "migrate": cmd_migrate,
        "check-config": cmd_check_config,
        "hash-key": cmd_hash_key,
        "version": cmd_version,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
