"""Firewall by source on the multi-host stack: from every lab host to every port of
every other host, open exactly to the sources molecule/shared/firewall_checks.py's
table names (registry hosts also limited outbound), and the controller (the admin
network) reaches SSH and HAProxy's stats but not PostgreSQL."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))
import firewall_checks


@pytest.fixture(scope="module")
def lab():
    return firewall_checks.scenario_lab()


@pytest.fixture(scope="module")
def outcomes(lab):
    hosts, groups, addresses = lab
    return firewall_checks.run_table(hosts, groups, addresses)


def test_every_port_is_open_exactly_to_its_sources(outcomes):
    table, seen = outcomes
    assert firewall_checks.mismatches(table, seen) == []
    # The table is not trivially closed: each kind of case is there.
    ids = {c.id for c in table if c.expected == "open"}
    for case in ("lb1->registry1:8081", "registry2->data1:5432", "registry1->data1:6379"):
        assert case in ids


def test_registry_hosts_reach_only_what_they_need(outcomes):
    _table, seen = outcomes
    # HAProxy's front end is open to everyone: data1 gets in, registry1 may not go out.
    assert seen["data1->lb1:8080"] == "open"
    assert seen["registry1->lb1:8080"] in firewall_checks.CLOSED
    # The instances only from the load balancer, not from the other registry host.
    assert seen["registry2->registry1:8081"] in firewall_checks.CLOSED
    assert seen["data1->registry1:8082"] in firewall_checks.CLOSED


def test_the_controller_is_an_admin_network_and_nothing_more(lab):
    _hosts, groups, addresses = lab
    by_group = {g: sorted(h for h, gs in groups.items() if g in gs) for g in ("db", "lb")}
    assert firewall_checks.probe_here(addresses[by_group["db"][0]], 22) == "open"
    assert firewall_checks.probe_here(addresses[by_group["lb"][0]], 8404) == "open"
    assert firewall_checks.probe_here(addresses[by_group["db"][0]], 5432) == "filtered"
