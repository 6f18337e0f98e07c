"""Firewall by source on db1 (db, cache), app1 (registry) and other1 (bench): from every
lab host to every port of every other host, open exactly to the sources that
molecule/shared/firewall_checks.py's table names; app1 is limited outbound too. The role
refuses admin networks that are empty or would lock out Ansible, changing nothing."""

from __future__ import annotations

import json
import re

import firewall_checks
import pytest

# molecule.yml's base_firewall_extra_rules: other1 opens 9998 to every address.
EXTRA = ((9998, "bench", firewall_checks.ANY),)


@pytest.fixture(scope="module")
def lab():
    return firewall_checks.scenario_lab()


@pytest.fixture(scope="module")
def outcomes(lab):
    hosts, groups, addresses = lab
    return firewall_checks.run_table(hosts, groups, addresses, EXTRA)


def test_every_port_is_open_exactly_to_its_sources(outcomes):
    table, seen = outcomes
    assert firewall_checks.mismatches(table, seen) == []
    opened = {c.id for c in table if c.expected == "open"}
    assert {"app1->db1:5432", "app1->db1:6379", "db1->other1:9998"} <= opened


def test_postgresql_and_redis_only_from_the_registry_host(outcomes):
    _table, seen = outcomes
    for port in (5432, 6379, 26379):
        assert seen[f"app1->db1:{port}"] == "open"
        assert seen[f"other1->db1:{port}"] == "filtered"
    # Exporters: monitoring hosts only, and this lab has none.
    for port in (9100, 9187, 9121):
        assert seen[f"other1->db1:{port}"] == "filtered"


def test_the_registry_host_is_limited_outbound(outcomes):
    _table, seen = outcomes
    # other1:9998 admits every address: db1 gets in, app1 may not go out.
    assert seen["db1->other1:9998"] == "open"
    assert seen["app1->other1:9998"] in firewall_checks.CLOSED


def test_the_controller_reaches_ssh_but_not_postgresql(addresses):
    assert firewall_checks.probe_here(addresses["db1"], 22) == "open"
    assert firewall_checks.probe_here(addresses["db1"], 5432) == "filtered"


def _nftables_sum(host) -> str:
    with host.sudo():
        return host.check_output("sha1sum /etc/nftables.conf && nft list table inet llmops_filter")


@pytest.mark.parametrize(
    ("admin_networks", "message"),
    [
        ([], r"base_firewall_admin_networks is empty"),
        # A network that does not hold the controller would shut Ansible out.
        (["192.0.2.0/24"], r"Ansible reaches this host from 10\.213\.\d+\.1, which is in none of"),
    ],
    ids=["empty", "without-the-controller"],
)
def test_admin_networks_that_would_lock_out_are_refused(
    lab_host, run_playbook, admin_networks, message
):
    other = lab_host("other1")
    before = _nftables_sum(other)

    result = run_playbook(
        "base_only.yml", "-e", json.dumps({"base_firewall_admin_networks": admin_networks})
    )
    assert result.returncode != 0
    assert re.search(message, result.stdout), result.stdout[-3000:]
    assert re.search(r"other1 *: ok=\d+ +changed=0 ", result.stdout), result.stdout[-1000:]
    assert _nftables_sum(other) == before
