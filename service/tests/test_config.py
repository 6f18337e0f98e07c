"""Configuration: defaults, env overrides, and errors that name the key."""

from __future__ import annotations

import hashlib

import pytest
from helpers import cli

from schema_registry.config import load_config
from schema_registry.errors import ConfigError

DB = "postgresql://registry:pw@db:5432/schema_registry"


def write(tmp_path, text: str):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return str(path)


def test_defaults_follow_upstream(tmp_path):
    config = load_config(write(tmp_path, f"database: {{url: '{DB}'}}\n"), env={})
    assert (config.server_port, config.metrics_port) == (8080, 9091)
    assert config.body_limit_bytes == 10 * 1024 * 1024
    assert config.protect_reads is False
    assert config.api_keys == ()


def test_env_overrides_win_over_file(tmp_path):
    path = write(tmp_path, f"database: {{url: '{DB}'}}\nserver: {{port: 8000}}\n")
    env = {
        "DATABASE_URL": "postgresql://other@h/db",
        "REDIS_URL": "redis://:pw@cache:6379/0",
        "SERVER_PORT": "8081",
        "METRICS_PORT": "9181",
    }
    config = load_config(path, env=env)
    assert config.database_url == env["DATABASE_URL"]
    assert config.redis_url == env["REDIS_URL"]
    assert (config.server_port, config.metrics_port) == (8081, 9181)


def test_config_path_from_environment(tmp_path):
    path = write(tmp_path, f"database: {{url: '{DB}'}}\nserver: {{port: 8123}}\n")
    assert load_config(None, env={"SCHEMA_REGISTRY_CONFIG": path}).server_port == 8123


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("server: {port: 70000}\n", "server.port"),
        ("server: {prot: 1}\n", "server.prot"),
        ("database: {pool_min: 5, pool_max: 2}\n", "database.pool_max"),
        ("auth: {api_keys: [{name: a, sha256: nothex}]}\n", "auth.api_keys[0].sha256"),
        ("auth: {protect_reads: 'yes'}\n", "auth.protect_reads"),
        ("registry: {default_compatibility: SIDEWAYS}\n", "registry.default_compatibility"),
        ("redis: {url: 'http://x'}\n", "redis.url"),
        ("extras: {}\n", "extras"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, text, key):
    path = write(
        tmp_path,
        f"database: {{url: '{DB}'}}\n" + text
        if "database" not in text
        else text.replace("database: {", f"database: {{url: '{DB}', "),
    )
    with pytest.raises(ConfigError) as error:
        load_config(path, env={})
    assert str(error.value).startswith(key)


def test_missing_database_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^database\.url"):
        load_config(write(tmp_path, "server: {port: 8080}\n"), env={})


def test_bad_env_override_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"^SERVER_PORT"):
        load_config(write(tmp_path, f"database: {{url: '{DB}'}}\n"), env={"SERVER_PORT": "x"})


def test_check_config_fails_at_start_and_redacts_secrets(tmp_path):
    bad = write(tmp_path, f"database: {{url: '{DB}'}}\nmetrics: {{port: -1}}\n")
    result = cli("check-config", config=bad)
    assert result.returncode == 2
    assert "metrics.port" in result.stderr
    good = write(tmp_path, f"database: {{url: '{DB}'}}\n")
    result = cli("check-config", config=good)
    assert result.returncode == 0
    assert "pw" not in result.stdout
    assert "***" in result.stdout


def test_serve_with_invalid_config_exits_naming_the_key(tmp_path):
    bad = write(tmp_path, f"database: {{url: '{DB}'}}\nserver: {{workers: 0}}\n")
    result = cli("serve", config=bad)
    assert result.returncode == 2
    assert "server.workers" in result.stderr


def test_hash_key_reads_stdin_and_prints_sha256():
    result = cli("hash-key", stdin="s3cret\n")
    assert result.stdout.strip() == hashlib.sha256(b"s3cret").hexdigest()
    assert cli("hash-key", stdin="\n").returncode == 2


MULTI = "postgresql://registry:pw@db1:5432,db2:5432,db3:5432/schema_registry"
RURL = "redis://registry:pw@cache1:6379/0"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f"database: {{url: '{MULTI}'}}\n", "database.url"),  # no target_session_attrs
        (f"database: {{url: '{DB}', tcp_user_timeout_seconds: 0}}\n", "database.tcp_user"),
        (f"database: {{url: '{DB}', write_retry_seconds: -1}}\n", "database.write_retry"),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: '{RURL}', sentinels: 'a:1'}}\n",
            "redis.sentinels",
        ),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: '{RURL}', sentinels: ['a']}}\n",
            "redis.sentinels[0]",
        ),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: '{RURL}', sentinels: ['a:99999']}}\n",
            "redis.sentinels[0] port",
        ),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: '{RURL}', sentinels: ['a:1', 'a:1']}}\n",
            "redis.sentinels",
        ),
        (f"database: {{url: '{DB}'}}\nredis: {{sentinels: ['a:1']}}\n", "redis.sentinels"),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: 'unix:///r.sock', sentinels: ['a:1']}}\n",
            "redis.sentinels",
        ),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: '{RURL}', sentinel_master: 'a b'}}\n",
            "redis.sentinel_master",
        ),
        (
            f"database: {{url: '{DB}'}}\nredis: {{url: '{RURL}', sentinel_password: 5}}\n",
            "redis.sentinel_password",
        ),
    ],
)
def test_ha_keys_are_checked_and_errors_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), env={})
    assert str(error.value).startswith(key), str(error.value)


def test_ha_keys_parse(tmp_path):
    text = (
        f"database: {{url: '{MULTI}?target_session_attrs=read-write'}}\n"
        f"redis: {{url: '{RURL}', sentinels: ['10.0.0.1:26379', '[fd00::2]:26379'],"
        " sentinel_password: s3cret-sentinel}\n"
    )
    config = load_config(write(tmp_path, text), env={})
    assert config.database_url.endswith("target_session_attrs=read-write")
    assert config.redis_sentinels == (("10.0.0.1", 26379), ("fd00::2", 26379))
    assert config.redis_sentinel_master == "registry"
    assert config.redis_sentinel_password == "s3cret-sentinel"
    assert config.db_write_retry_seconds == 15.0
    shown = cli("check-config", config=write(tmp_path, text))
    assert shown.returncode == 0, shown.stderr
    assert "s3cret-sentinel" not in shown.stdout
    assert "10.0.0.1:26379" in shown.stdout
