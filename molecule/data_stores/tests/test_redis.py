"""Redis answers only to its ACL users, each limited to what it needs."""

from __future__ import annotations

import testinfra.host

testinfra_hosts = ["app1"]


def redis(host: testinfra.host.Host, address: str, *command: str, user=None, password=None):
    auth = f"REDISCLI_AUTH={password} " if password is not None else ""
    user_arg = f"--user {user} " if user else ""
    return host.run(f"{auth}redis-cli -h {address} {user_arg}" + " ".join(command))


def test_unauthenticated_clients_are_refused(host, addresses):
    result = redis(host, addresses["db1"], "GET", "schema:x")
    assert "NOAUTH" in result.stdout + result.stderr


def test_default_user_is_disabled(host, addresses):
    for password in ("", "nopass", "default"):
        result = redis(host, addresses["db1"], "PING", user="default", password=password)
        assert "PONG" not in result.stdout
        assert "WRONGPASS" in result.stdout + result.stderr


def test_registry_user_reads_and_writes_schema_keys(host, addresses, secrets):
    pw = secrets["redis_registry_password"]
    assert (
        redis(
            host,
            addresses["db1"],
            "SET",
            "schema:x",
            "v1",
            "EX",
            "60",
            user="registry",
            password=pw,
        ).stdout.strip()
        == "OK"
    )
    assert (
        redis(
            host, addresses["db1"], "GET", "schema:x", user="registry", password=pw
        ).stdout.strip()
        == "v1"
    )


def test_registry_user_cannot_touch_other_keys_or_flush(host, addresses, secrets):
    pw = secrets["redis_registry_password"]
    for command in (
        ("SET", "other:x", "1"),
        ("FLUSHALL",),
        ("KEYS", "'*'"),
        ("CONFIG", "GET", "'*'"),
    ):
        result = redis(host, addresses["db1"], *command, user="registry", password=pw)
        assert "NOPERM" in result.stdout + result.stderr, command


def test_exporter_user_reads_statistics_but_no_keys(host, addresses, secrets):
    pw = secrets["redis_exporter_password"]
    info = redis(host, addresses["db1"], "INFO", "server", user="exporter", password=pw)
    assert "redis_version:7." in info.stdout
    result = redis(host, addresses["db1"], "GET", "schema:x", user="exporter", password=pw)
    assert "NOPERM" in result.stdout + result.stderr


def test_append_only_file_is_on(lab_host, addresses, secrets):
    db = lab_host("db1")
    pw = secrets["redis_exporter_password"]
    setting = redis(
        db, addresses["db1"], "CONFIG", "GET", "appendonly", user="exporter", password=pw
    )
    assert setting.stdout.split() == ["appendonly", "yes"]
    with db.sudo():
        assert db.file("/var/lib/redis/appendonlydir/appendonly.aof.manifest").is_file


def test_acl_file_holds_only_password_hashes(lab_host, secrets):
    db = lab_host("db1")
    with db.sudo():
        acl = db.file("/etc/redis/users.acl").content_string
    assert secrets["redis_registry_password"] not in acl
    assert secrets["redis_exporter_password"] not in acl
    assert acl.count(" #") == 2
    assert "user default off" in acl


def test_redis_runs_under_systemd_supervision_on_listed_addresses(lab_host, addresses, secrets):
    db = lab_host("db1")
    unit = db.check_output("systemctl show -p Type -p ActiveState redis-server")
    assert "Type=notify" in unit
    assert "ActiveState=active" in unit
    pw = secrets["redis_exporter_password"]
    for name, expected in (
        ("supervised", "systemd"),
        ("bind", f"127.0.0.1 {addresses['db1']}"),
        ("maxmemory-policy", "allkeys-lru"),
        ("protected-mode", "yes"),
    ):
        result = redis(db, "127.0.0.1", "CONFIG", "GET", name, user="exporter", password=pw)
        assert result.stdout.splitlines()[1:] == [expected], name
