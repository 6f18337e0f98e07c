"""Base role: firewall opens only the planned ports, journald keeps logs (who may reach
each port: test_firewall.py)."""

from __future__ import annotations

import pytest

testinfra_hosts = ["app1"]

# A port no rule opens (see base_firewall_rules).
UNLISTED_PORT = 9999


def connect(host, address: str, port: int):
    return host.run(
        "python3 -c %s %s %s",
        "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)",
        address,
        str(port),
    )


@pytest.fixture
def listener_on_db1(lab_host):
    """A throwaway TCP listener on db1's unlisted port, removed afterwards."""
    db = lab_host("db1")
    with db.sudo():
        db.check_output(
            "systemd-run --unit llmops-fwtest --property=Type=exec "
            f"python3 -m http.server {UNLISTED_PORT} --bind 0.0.0.0"
        )
    yield db
    with db.sudo():
        db.run("systemctl stop llmops-fwtest")


def test_firewall_blocks_an_unlisted_port(host, addresses, listener_on_db1):
    db = listener_on_db1
    # The listener is up: db1 reaches it itself (loopback is always allowed)...
    local = db.run(
        "for i in $(seq 50); do python3 -c %s && exit 0; sleep 0.1; done; exit 1",
        f"import socket; socket.create_connection(('127.0.0.1', {UNLISTED_PORT}), 1)",
    )
    assert local.rc == 0, local.stderr
    # ...but another host cannot.
    remote = connect(host, addresses["db1"], UNLISTED_PORT)
    assert remote.rc != 0


def test_firewall_opens_the_db_and_cache_ports_of_db1(host, addresses):
    for port in (5432, 6379):
        result = connect(host, addresses["db1"], port)
        assert result.rc == 0, (port, result.stderr)


def test_registry_host_opens_only_its_own_ports(lab_host, addresses):
    db = lab_host("db1")
    # app1 is in group registry only: PostgreSQL's port is not open there (its output
    # chain names 5432: where app1 itself may connect).
    ruleset = lab_host("app1")
    with ruleset.sudo():
        rules = ruleset.check_output("nft list chain inet llmops_filter input")
    assert "tcp dport 22 accept" in rules
    # No lb host in this lab: nobody may reach the instances' port.
    assert "8081" not in rules
    assert "5432" not in rules
    # SSH only from the admin networks (the controller), not from another lab host.
    assert connect(db, addresses["app1"], 22).rc != 0


def test_journal_is_written_to_disk(host):
    with host.sudo():
        files = host.check_output("find /var/log/journal -name '*.journal'")
    assert files.strip(), "no journal files under /var/log/journal"


def test_firewall_off_removes_only_our_table_and_extra_rules_apply(lab_host, run_playbook):
    other = lab_host("other1")
    with other.sudo():
        # Another program's table, which the role must never touch.
        other.check_output("nft add table inet someone_else")
    try:
        off = run_playbook("base_only.yml", "-e", '{"base_firewall_enabled": false}')
        assert off.returncode == 0, off.stdout[-3000:]
        with other.sudo():
            tables = other.check_output("nft list tables")
            config = other.check_output("cat /etc/nftables.conf")
        assert "llmops_filter" not in tables
        assert "someone_else" in tables
        assert "policy drop" not in config  # a reboot does not bring the table back

        extra = (
            '{"base_firewall_extra_rules": '
            '[{"name": "mdns", "port": 5353, "proto": "udp", "sources": ["any"]}]}'
        )
        on = run_playbook("base_only.yml", "-e", extra)
        assert on.returncode == 0, on.stdout[-3000:]
        with other.sudo():
            rules = other.check_output("nft list table inet llmops_filter")
        assert "udp dport 5353 accept" in rules
        assert "9094" not in rules  # other1 is not a monitoring host
    finally:
        with other.sudo():
            other.run("nft delete table inet someone_else")
        # Back to the converged state, which later tests (check mode) expect.
        restored = run_playbook("base_only.yml")
        assert restored.returncode == 0, restored.stdout[-3000:]
