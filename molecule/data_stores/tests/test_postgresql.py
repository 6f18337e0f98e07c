"""PostgreSQL admits only registry hosts, with the owner's password, over scram."""

from __future__ import annotations

import testinfra.host

testinfra_hosts = ["app1"]


def psql(host: testinfra.host.Host, address: str, password: str, dbname: str = "schema_registry"):
    # The password travels in the environment, as a client would pass it.
    return host.run(
        "PGPASSWORD=%s PGCONNECT_TIMEOUT=5 psql -h %s -U schema_registry -d %s -tAc 'SELECT 42'",
        password,
        address,
        dbname,
    )


def as_postgres(db: testinfra.host.Host, query: str) -> str:
    with db.sudo("postgres"):
        return db.check_output("psql -tAc %s", query)


def test_registry_host_logs_in_over_the_network(host, addresses, secrets):
    result = psql(host, addresses["db1"], secrets["postgresql_registry_password"])
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_wrong_password_is_rejected(host, addresses):
    result = psql(host, addresses["db1"], "not-the-password")
    assert result.rc != 0
    assert "password authentication failed" in result.stderr


def test_registry_host_cannot_reach_other_databases(host, addresses, secrets):
    result = psql(host, addresses["db1"], secrets["postgresql_registry_password"], "postgres")
    assert result.rc != 0
    assert "no pg_hba.conf entry" in result.stderr


def test_host_outside_registry_is_rejected_by_pg_hba(lab_host, addresses, secrets):
    # The firewall already drops other hosts (test_firewall.py); db1 itself reaches its
    # own address (loopback), which is outside `registry` too: pg_hba must refuse it.
    db = lab_host("db1")
    result = psql(db, addresses["db1"], secrets["postgresql_registry_password"])
    assert result.rc != 0
    assert f'no pg_hba.conf entry for host "{addresses["db1"]}"' in result.stderr


def test_password_is_stored_as_scram(lab_host):
    stored = as_postgres(
        lab_host("db1"),
        "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'schema_registry'",
    )
    assert stored == "SCRAM-SHA-256$"


def test_monitoring_role_only_reads_statistics(lab_host):
    row = as_postgres(
        lab_host("db1"),
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb,"
        " pg_has_role('postgres_exporter', 'pg_monitor', 'member')"
        " FROM pg_roles WHERE rolname = 'postgres_exporter'",
    )
    assert row == "t|f|f|f|t"


def test_public_cannot_connect_to_the_registry_database(lab_host):
    allowed = as_postgres(
        lab_host("db1"),
        "SELECT has_database_privilege('postgres_exporter', 'schema_registry', 'CONNECT')",
    )
    assert allowed == "f"


def test_tuning_settings_are_in_force(lab_host):
    settings = as_postgres(
        lab_host("db1"),
        "SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings"
        " WHERE name IN ('max_connections', 'password_encryption', 'shared_buffers')",
    )
    # shared_buffers is counted in 8 kB pages: 256MB = 32768.
    assert settings == "max_connections=200,password_encryption=scram-sha-256,shared_buffers=32768"
