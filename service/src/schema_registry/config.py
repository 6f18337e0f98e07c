"""Configuration: one YAML file plus the upstream environment overrides.

Every key is checked at start; an invalid value raises ConfigError naming the key.
Env overrides (DATABASE_URL, REDIS_URL, SERVER_PORT, METRICS_PORT) win over the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schema_registry.errors import ConfigError

CONFIG_ENV = "SCHEMA_REGISTRY_CONFIG"
COMPATIBILITY_MODES = (
    "NONE",
    "BACKWARD",
    "FORWARD",
    "FULL",
    "BACKWARD_TRANSITIVE",
    "FORWARD_TRANSITIVE",
    "FULL_TRANSITIVE",
)
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# API key scopes, lowest first: each implies the ones before it.
SCOPES = ("read", "write", "admin")
DEFAULT_SCOPES = ("read", "write")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
JSON_SCHEMA_DRAFTS = ("draft-04", "draft-06", "draft-07", "draft-2019-09", "draft-2020-12")

# Keys the file may hold, with their defaults (None: required or optional without default).
_ALLOWED: dict[str, dict[str, Any]] = {
    "server": {
        "host": "0.0.0.0",  # noqa: S104 - a server binds all interfaces unless told otherwise
        "port": 8080,
        "workers": 2,
        "body_limit_bytes": 10 * 1024 * 1024,
        "graceful_timeout_seconds": 30,
    },
    "metrics": {"host": "0.0.0.0", "port": 9091, "multiproc_dir": None},  # noqa: S104
    "database": {
        "url": None,
        "pool_min": 5,
        "pool_max": 20,
        "connect_timeout_seconds": 2.0,
        "pool_timeout_seconds": 5.0,
        "tcp_user_timeout_seconds": 2.0,
        "keepalives_idle_seconds": 2,
        "write_retry_seconds": 15.0,
    },
    "redis": {
        "url": None,
        "ttl_seconds": 3600,
        "timeout_seconds": 0.5,
        "sentinels": [],
        "sentinel_master": "registry",
        "sentinel_username": None,
        "sentinel_password": None,
        "tls_ca_file": None,
    },
    "cache": {"local_ttl_seconds": 1.0, "local_max_entries": 10000},
    "auth": {"api_keys": [], "protect_reads": False},
    "registry": {"default_compatibility": "BACKWARD", "json_schema_default_draft": "draft-07"},
    "logging": {"level": "INFO", "access_log": True},
}


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: str
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    def grants(self, needed: str) -> bool:
        """True when one of the key's scopes is `needed` or a higher one."""
        return max(SCOPES.index(scope) for scope in self.scopes) >= SCOPES.index(needed)


@dataclass(frozen=True)
class Config:
    server_host: str
    server_port: int
    workers: int
    body_limit_bytes: int
    graceful_timeout_seconds: int
    metrics_host: str
    metrics_port: int
    metrics_multiproc_dir: str | None
    database_url: str
    pool_min: int
    pool_max: int
    db_connect_timeout: float
    db_pool_timeout: float
    redis_url: str | None
    redis_ttl_seconds: int
    redis_timeout: float
    local_cache_ttl: float
    local_cache_entries: int
    api_keys: tuple[ApiKey, ...] = field(default_factory=tuple)
    protect_reads: bool = False
    default_compatibility: str = "BACKWARD"
    json_schema_default_draft: str = "draft-07"
    log_level: str = "INFO"
    access_log: bool = True
    db_tcp_user_timeout: float = 2.0
    db_keepalives_idle: int = 2
    db_write_retry_seconds: float = 15.0
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "registry"
    redis_sentinel_username: str | None = None
    redis_sentinel_password: str | None = None
    redis_tls_ca_file: str | None = None
    # From the environment only (the instance's env file), so an older release that
    # does not know them still starts with the same configuration file.
    metrics_tls_cert_file: str | None = None
    metrics_tls_key_file: str | None = None
    metrics_tls_client_ca_file: str | None = None


def _int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        else:
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}, got {value}")
    return value


def _number(key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key}: must be a number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high}, got {value}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: must be true or false, got {value!r}")
    return value


def _url(key: str, value: Any, schemes: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value.startswith(tuple(s + "://" for s in schemes)):
        allowed = ", ".join(s + "://" for s in schemes)
        raise ConfigError(f"{key}: must be a URL starting with one of {allowed}")
    return value


def _database_url(value: Any) -> str:
    url = _url("database.url", value, ("postgresql", "postgres"))
    rest = url.split("://", 1)[1]
    authority = re.split(r"[/?]", rest, maxsplit=1)[0]
    hosts = authority.rsplit("@", 1)[-1]
    count = len([h for h in hosts.split(",") if h])
    if count > 1 and "target_session_attrs=read-write" not in url:
        raise ConfigError(
            f"database.url: lists {count} hosts but no target_session_attrs=read-write;"
            " add ?target_session_attrs=read-write so writes reach the primary, not a standby"
        )
    if count == 0 and "host=" not in url:
        raise ConfigError("database.url: names no host")
    return url


_SENTINEL_MASTER = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def _sentinels(value: Any) -> tuple[tuple[str, int], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError('redis.sentinels: must be a list of "host:port" strings')
    found = []
    for index, item in enumerate(value):
        where = f"redis.sentinels[{index}]"
        if not isinstance(item, str) or ":" not in item:
            raise ConfigError(f'{where}: must be a "host:port" string, got {item!r}')
        host, _, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or any(c in host for c in "/@ "):
            raise ConfigError(f"{where}: {item!r} has no valid host")
        found.append((host, _int(f"{where} port", port, 1, 65535)))
    if len(set(found)) != len(found):
        raise ConfigError("redis.sentinels: lists the same sentinel twice")
    return tuple(found)


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: must be a string")
    return value


def _check_redis(redis: dict[str, Any]) -> None:
    master = redis["sentinel_master"]
    if not isinstance(master, str) or not _SENTINEL_MASTER.match(master):
        raise ConfigError("redis.sentinel_master: must be 1-128 letters, digits, '.', '_' or '-'")
    if redis["sentinels"] and str(redis["url"]).startswith("unix://"):
        raise ConfigError("redis.sentinels: needs a redis:// or rediss:// URL (no socket)")
    # Certificate and host name checks are always on: a URL option must not turn them off.
    if isinstance(redis["url"], str) and re.search(r"[?&]ssl_", redis["url"]):
        raise ConfigError(
            "redis.url: takes no ssl_* options (the server certificate and host name are"
            " always verified; give the CA in redis.tls_ca_file)"
        )
    ca_file = redis["tls_ca_file"]
    if ca_file is not None:
        if not isinstance(ca_file, str) or not ca_file:
            raise ConfigError("redis.tls_ca_file: must be the path of a CA certificate file")
        if not str(redis["url"]).startswith("rediss://"):
            raise ConfigError("redis.tls_ca_file: needs a rediss:// URL (TLS)")
        if not Path(ca_file).is_file():
            raise ConfigError(f"redis.tls_ca_file: {ca_file} is not a readable file")
    if redis["sentinels"] and redis["url"] is None:
        raise ConfigError(
            "redis.sentinels: needs redis.url too (its user, password and database are"
            " used for the master Sentinel names; its host and port are not)"
        )


def _scopes(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: must be a non-empty list of {', '.join(SCOPES)}")
    for scope in value:
        if scope not in SCOPES:
            raise ConfigError(
                f"{where}: unknown scope {scope!r}; the scopes are {', '.join(SCOPES)}"
            )
    return tuple(dict.fromkeys(value))


def _api_keys(value: Any) -> tuple[ApiKey, ...]:
    if not isinstance(value, list):
        raise ConfigError("auth.api_keys: must be a list of {name, sha256, scopes}")
    keys = []
    for index, item in enumerate(value):
        where = f"auth.api_keys[{index}]"
        if not isinstance(item, dict) or not {"name", "sha256"} <= set(item) <= {
            "name",
            "sha256",
            "scopes",
        }:
            raise ConfigError(f"{where}: must have the keys name and sha256 (and scopes)")
        if not isinstance(item["name"], str) or not item["name"]:
            raise ConfigError(f"{where}.name: must be a non-empty string")
        digest = item["sha256"]
        if not isinstance(digest, str) or not _SHA256_HEX.match(digest):
            raise ConfigError(f"{where}.sha256: must be 64 lowercase hex characters")
        scopes = _scopes(f"{where}.scopes", item.get("scopes", list(DEFAULT_SCOPES)))
        keys.append(ApiKey(item["name"], digest, scopes))
    return tuple(keys)


def _merge_file(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("<top level>: the config file must hold a mapping")
    merged: dict[str, dict[str, Any]] = {}
    for section, defaults in _ALLOWED.items():
        given = raw.get(section, {})
        if given is None:
            given = {}
        if not isinstance(given, dict):
            raise ConfigError(f"{section}: must be a mapping")
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"{section}.{unknown[0]}: unknown key")
        merged[section] = {**defaults, **given}
    unknown_sections = sorted(set(raw) - set(_ALLOWED))
    if unknown_sections:
        raise ConfigError(f"{unknown_sections[0]}: unknown section")
    return merged


def _apply_env(merged: dict[str, dict[str, Any]], env: dict[str, str]) -> None:
    if env.get("DATABASE_URL"):
        merged["database"]["url"] = env["DATABASE_URL"]
    if env.get("REDIS_URL"):
        merged["redis"]["url"] = env["REDIS_URL"]
    if env.get("SERVER_PORT"):
        merged["server"]["port"] = _int("SERVER_PORT", env["SERVER_PORT"], 1, 65535)
    if env.get("METRICS_PORT"):
        merged["metrics"]["port"] = _int("METRICS_PORT", env["METRICS_PORT"], 1, 65535)


def _metrics_tls(env: dict[str, str]) -> dict[str, str | None]:
    """METRICS_TLS_CERT_FILE / _KEY_FILE / _CLIENT_CA_FILE: https for /metrics."""
    cert = env.get("METRICS_TLS_CERT_FILE") or None
    key = env.get("METRICS_TLS_KEY_FILE") or None
    client_ca = env.get("METRICS_TLS_CLIENT_CA_FILE") or None
    if (key or client_ca) and not cert:
        raise ConfigError(
            "METRICS_TLS_KEY_FILE/METRICS_TLS_CLIENT_CA_FILE: need METRICS_TLS_CERT_FILE"
        )
    return {
        "metrics_tls_cert_file": cert,
        "metrics_tls_key_file": key,
        "metrics_tls_client_ca_file": client_ca,
    }


def load_config(path: str | None = None, env: dict[str, str] | None = None) -> Config:
    """Reads the file (path, else $SCHEMA_REGISTRY_CONFIG, else none) and the env overrides."""
    env = dict(os.environ) if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    raw: Any = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config file {path}: cannot be read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path}: not valid YAML ({exc})") from exc
    merged = _merge_file(raw)
    _apply_env(merged, env)
    server, metrics, database = merged["server"], merged["metrics"], merged["database"]
    redis, auth, registry, logging = (
        merged["redis"],
        merged["auth"],
        merged["registry"],
        merged["logging"],
    )
    if database["url"] is None:
        raise ConfigError("database.url: required (or set DATABASE_URL)")
    mode = registry["default_compatibility"]
    if mode not in COMPATIBILITY_MODES:
        raise ConfigError(
            f"registry.default_compatibility: must be one of {', '.join(COMPATIBILITY_MODES)}"
        )
    draft = registry["json_schema_default_draft"]
    if draft not in JSON_SCHEMA_DRAFTS:
        raise ConfigError(
            "registry.json_schema_default_draft: must be one of "
            f"{', '.join(JSON_SCHEMA_DRAFTS)}, got {draft!r}"
        )
    level = logging["level"]
    if not isinstance(level, str) or level.upper() not in _LOG_LEVELS:
        raise ConfigError(f"logging.level: must be one of {', '.join(_LOG_LEVELS)}")
    for key, value in (("server.host", server["host"]), ("metrics.host", metrics["host"])):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: must be a non-empty string")
    multiproc_dir = metrics["multiproc_dir"]
    if multiproc_dir is not None and not isinstance(multiproc_dir, str):
        raise ConfigError("metrics.multiproc_dir: must be a path")
    pool_min = _int("database.pool_min", database["pool_min"], 1, 500)
    pool_max = _int("database.pool_max", database["pool_max"], 1, 500)
    if pool_max < pool_min:
        raise ConfigError("database.pool_max: must be >= database.pool_min")
    _check_redis(redis)
    config = Config(
        server_host=server["host"],
        server_port=_int("server.port", server["port"], 1, 65535),
        workers=_int("server.workers", server["workers"], 1, 64),
        body_limit_bytes=_int("server.body_limit_bytes", server["body_limit_bytes"], 1024, 2**31),
        graceful_timeout_seconds=_int(
            "server.graceful_timeout_seconds", server["graceful_timeout_seconds"], 1, 3600
        ),
        metrics_host=metrics["host"],
        metrics_port=_int("metrics.port", metrics["port"], 1, 65535),
        metrics_multiproc_dir=multiproc_dir,
        database_url=_database_url(database["url"]),
        pool_min=pool_min,
        pool_max=pool_max,
        db_connect_timeout=_number(
            "database.connect_timeout_seconds", database["connect_timeout_seconds"], 0.1, 60
        ),
        db_pool_timeout=_number(
            "database.pool_timeout_seconds", database["pool_timeout_seconds"], 0.1, 300
        ),
        redis_url=(
            None
            if redis["url"] is None
            else _url("redis.url", redis["url"], ("redis", "rediss", "unix"))
        ),
        redis_ttl_seconds=_int("redis.ttl_seconds", redis["ttl_seconds"], 1, 86400 * 30),
        redis_timeout=_number("redis.timeout_seconds", redis["timeout_seconds"], 0.01, 30),
        local_cache_ttl=_number(
            "cache.local_ttl_seconds", merged["cache"]["local_ttl_seconds"], 0, 60
        ),
        local_cache_entries=_int(
            "cache.local_max_entries", merged["cache"]["local_max_entries"], 1, 10**6
        ),
        api_keys=_api_keys(auth["api_keys"]),
        protect_reads=_bool("auth.protect_reads", auth["protect_reads"]),
        default_compatibility=mode,
        json_schema_default_draft=draft,
        log_level=level.upper(),
        access_log=_bool("logging.access_log", logging["access_log"]),
        db_tcp_user_timeout=_number(
            "database.tcp_user_timeout_seconds", database["tcp_user_timeout_seconds"], 0.5, 600
        ),
        db_keepalives_idle=_int(
            "database.keepalives_idle_seconds", database["keepalives_idle_seconds"], 1, 3600
        ),
        db_write_retry_seconds=_number(
            "database.write_retry_seconds", database["write_retry_seconds"], 0, 120
        ),
        redis_sentinels=_sentinels(redis["sentinels"]),
        redis_sentinel_master=redis["sentinel_master"],
        redis_sentinel_username=_optional_str(
            "redis.sentinel_username", redis["sentinel_username"]
        ),
        redis_sentinel_password=_optional_str(
            "redis.sentinel_password", redis["sentinel_password"]
        ),
        redis_tls_ca_file=redis["tls_ca_file"],
        **_metrics_tls(env),
    )
    if config.server_port == config.metrics_port:
        raise ConfigError("metrics.port: must differ from server.port")
    return config


def redact_url(url: str | None) -> str | None:
    """The URL with any password replaced, for logs and check-config output."""
    if url is None:
        return None
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
