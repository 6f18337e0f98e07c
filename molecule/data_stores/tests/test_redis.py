"""Redis answers only to its ACL users, each limited to what it needs, and only over
TLS (redis_tls, the default): no plain-text port, the server's certificate checks out
against the internal CA and not against another one."""

from __future__ import annotations

import testinfra.host

testinfra_hosts = ["app1"]

CA = "/etc/llmops/tls/ca.crt"
TLS = f"--tls --cacert {CA} "


def redis(
    host: testinfra.host.Host, address: str, *command: str, user=None, password=None, tls=TLS
):
    auth = f"REDISCLI_AUTH={password} " if password is not None else ""
    user_arg = f"--user {user} " if user else ""
    return host.run(f"{auth}redis-cli {tls}-h {address} -p 6379 {user_arg}" + " ".join(command))


def test_plain_text_gets_no_answer(host, addresses, secrets):
    pw = secrets["redis_exporter_password"]
    result = redis(host, addresses["db1"], "PING", user="exporter", password=pw, tls="")
    assert "PONG" not in result.stdout
    assert result.rc != 0 or "Connection reset" in result.stderr + result.stdout


def test_tls_with_the_internal_ca_works_and_a_wrong_ca_fails(host, addresses, secrets):
    pw = secrets["redis_exporter_password"]
    assert redis(host, addresses["db1"], "PING", user="exporter", password=pw).stdout == "PONG\n"
    # A CA of our own that did not sign db1's certificate.
    host.run(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=wrong-ca"
        " -keyout /tmp/wrong-ca.key -out /tmp/wrong-ca.crt"
    )
    result = redis(
        host,
        addresses["db1"],
        "PING",
        user="exporter",
        password=pw,
        tls="--tls --cacert /tmp/wrong-ca.crt ",
    )
    assert "PONG" not in result.stdout
    assert "certificate verify failed" in result.stdout + result.stderr


def test_redis_listens_with_tls_only(lab_host, secrets):
    db = lab_host("db1")
    pw = secrets["redis_exporter_password"]
    settings = {}
    for name in ("port", "tls-port", "tls-auth-clients", "tls-replication", "tls-protocols"):
        out = db.run(
            f"REDISCLI_AUTH={pw} llmops-redis-cli --user exporter --no-auth-warning"
            f" CONFIG GET {name}"
        )
        settings[name] = out.stdout.splitlines()[1:]
    assert settings == {
        "port": ["0"],
        "tls-port": ["6379"],
        "tls-auth-clients": ["no"],
        "tls-replication": ["yes"],
        "tls-protocols": ["TLSv1.2 TLSv1.3"],
    }
    with db.sudo():
        listening = db.check_output("ss -Htlnp")
    redis_ports = sorted(
        {
            line.split()[3].rsplit(":", 1)[1]
            for line in listening.splitlines()
            if "redis-server" in line
        }
    )
    assert redis_ports == ["6379"], listening
    assert "ssl-cert" in db.check_output("id -nG redis").split()


def test_reload_serves_the_certificate_again_without_a_restart(lab_host, addresses):
    """systemctl reload redis-server (what role pki's handler runs after a new
    certificate): CONFIG SET of the tls files as the local reload user; same process."""
    db = lab_host("db1")
    with db.sudo():
        pid = db.check_output("systemctl show -p MainPID --value redis-server")
        reload = db.run("systemctl reload redis-server")
        assert reload.rc == 0, reload.stderr
        assert db.check_output("systemctl show -p MainPID --value redis-server") == pid
        assert db.service("redis-server").is_running
        acl = db.file("/etc/redis/users.acl").content_string
        secret = db.file("/etc/llmops/redis-tls-reload.pass")
        assert secret.user == "root" and secret.mode == 0o600
        assert secret.content_string.strip() not in acl
    assert "user llmops-tls-reload on #" in acl
    assert "-@all +config|set" in acl


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
    assert acl.count(" #") == 3  # registry, exporter and the local TLS reload user
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
        result = db.run(
            f"REDISCLI_AUTH={pw} llmops-redis-cli --user exporter --no-auth-warning"
            f" CONFIG GET {name}"
        )
        assert result.stdout.splitlines()[1:] == [expected], name
