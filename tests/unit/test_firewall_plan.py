"""Filter llmops.registry.firewall_plan: rules by group -> entries by address, and
firewall_admits; plus the role's own default rules against a realistic inventory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from test_release_lib import COLLECTIONS

sys.path.insert(0, str(COLLECTIONS))

from ansible.errors import AnsibleFilterError
from ansible_collections.llmops.registry.plugins.filter import firewall_admits as admits_plugin
from ansible_collections.llmops.registry.plugins.filter import firewall_plan as plan_plugin
from ansible_collections.llmops.registry.plugins.filter.firewall_admits import firewall_admits
from ansible_collections.llmops.registry.plugins.filter.firewall_plan import firewall_plan

ROLE_DEFAULTS = Path(__file__).resolve().parents[2] / "roles" / "base" / "defaults" / "main.yml"

GROUPS = {
    "all": ["reg1", "reg2", "data1", "lb1", "mon1"],
    "registry": ["reg1", "reg2"],
    "db": ["data1"],
    "cache": ["data1"],
    "lb": ["lb1"],
    "monitoring": ["mon1"],
    "bench": ["mon1"],
}
HOSTVARS = {
    "reg1": {"ansible_default_ipv4": {"address": "10.0.1.11"}, "ansible_host": "10.9.9.9"},
    "reg2": {"ansible_default_ipv4": {"address": "10.0.1.12"}},
    # No facts gathered: its ansible_host is the address.
    "data1": {"ansible_host": "10.0.2.11"},
    "lb1": {"ansible_default_ipv4": {"address": "10.0.0.11"}},
    "mon1": {"ansible_default_ipv4": {"address": "10.0.3.11"}},
}
ADMIN = ["192.0.2.0/24", "198.51.100.7/32"]


def plan(rules, group_names, admin=None, groups=None, hostvars=None):
    return firewall_plan(
        rules,
        GROUPS if groups is None else groups,
        HOSTVARS if hostvars is None else hostvars,
        group_names,
        ADMIN if admin is None else admin,
    )


def triples(entries):
    return [(e["direction"], e["proto"], e["port"], e["address"]) for e in entries]


@pytest.mark.parametrize(
    ("rule", "group_names", "expected"),
    [
        # Sources by group: every host's address, facts first, ansible_host second.
        (
            {"name": "pg", "port": 5432, "hosts": ["db"], "sources": ["registry", "db"]},
            ["db", "cache"],
            [
                ("in", "tcp", 5432, "10.0.1.11"),
                ("in", "tcp", 5432, "10.0.1.12"),
                ("in", "tcp", 5432, "10.0.2.11"),
            ],
        ),
        # A host outside the rule's hosts gets nothing.
        ({"name": "pg", "port": 5432, "hosts": ["db"], "sources": ["registry"]}, ["registry"], []),
        # "all" hosts, admin networks (a /32 loses its prefix), a list of ports.
        (
            {"name": "ssh", "port": [22, "2222"], "sources": ["admin"]},
            ["lb"],
            [
                ("in", "tcp", 22, "192.0.2.0/24"),
                ("in", "tcp", 22, "198.51.100.7"),
                ("in", "tcp", 2222, "192.0.2.0/24"),
                ("in", "tcp", 2222, "198.51.100.7"),
            ],
        ),
        (
            {"name": "fe", "port": 8080, "hosts": ["lb"], "sources": ["any"]},
            ["lb"],
            [("in", "tcp", 8080, "any")],
        ),
        # Literal networks, UDP, and a group the inventory lacks (no entry, no error).
        (
            {
                "name": "x",
                "port": 9094,
                "proto": "udp",
                "hosts": ["monitoring"],
                "sources": ["10.5.0.0/16", "backup"],
            },
            ["monitoring"],
            [("in", "udp", 9094, "10.5.0.0/16")],
        ),
        (
            {"name": "vrrp", "proto": "vrrp", "hosts": ["lb"], "sources": ["lb"]},
            ["lb"],
            [("in", "vrrp", None, "10.0.0.11")],
        ),
        (
            {
                "name": "pg",
                "direction": "out",
                "port": 5432,
                "hosts": ["registry"],
                "destinations": ["db"],
            },
            ["registry"],
            [("out", "tcp", 5432, "10.0.2.11")],
        ),
    ],
)
def test_rules_become_entries_by_address(rule, group_names, expected):
    assert triples(plan([rule], group_names)) == expected


def test_entries_are_sorted_unique_and_keep_the_first_rule_name():
    rules = [
        {"name": "second", "port": 6379, "hosts": ["cache"], "sources": ["registry"]},
        {"name": "first", "port": 5432, "hosts": ["db"], "sources": ["registry"]},
        {"name": "again", "port": 6379, "hosts": ["cache"], "sources": ["10.0.1.11"]},
    ]
    entries = plan(rules, ["db", "cache"])
    assert triples(entries) == [
        ("in", "tcp", 5432, "10.0.1.11"),
        ("in", "tcp", 5432, "10.0.1.12"),
        ("in", "tcp", 6379, "10.0.1.11"),
        ("in", "tcp", 6379, "10.0.1.12"),
    ]
    assert [e["name"] for e in entries] == ["first", "first", "second", "second"]
    # Addresses sort numerically, not as text.
    many = {"all": ["a", "b"], "g": ["a", "b"]}
    hv = {"a": {"ansible_host": "10.0.0.10"}, "b": {"ansible_host": "10.0.0.9"}}
    got = firewall_plan([{"name": "n", "port": 1, "sources": ["g"]}], many, hv, ["g"], [])
    assert [e["address"] for e in got] == ["10.0.0.9", "10.0.0.10"]


def test_ipv6_entries_carry_their_family():
    entries = plan([{"name": "n", "port": 1, "sources": ["2001:db8::/32", "10.0.0.1"]}], [])
    assert [(e["family"], e["address"]) for e in entries] == [
        ("ip", "10.0.0.1"),
        ("ip6", "2001:db8::/32"),
    ]


@pytest.mark.parametrize(
    ("rules", "admin", "hostvars", "message"),
    [
        (
            [{"name": "ssh", "port": 22, "sources": ["admin"]}],
            [],
            HOSTVARS,
            "base_firewall_admin_networks) is empty",
        ),
        (
            [{"name": "ssh", "port": 22, "sources": ["admin"]}],
            ["not-a-net"],
            HOSTVARS,
            "'not-a-net'",
        ),
        ([{"name": "p", "port": 0, "sources": ["any"]}], ADMIN, HOSTVARS, "rule 'p': port 0"),
        ([{"name": "p", "port": "http", "sources": ["any"]}], ADMIN, HOSTVARS, "port 'http'"),
        ([{"name": "p", "port": 70000, "sources": ["any"]}], ADMIN, HOSTVARS, "1 to 65535"),
        ([{"name": "p", "sources": ["any"]}], ADMIN, HOSTVARS, "rule 'p' needs a port"),
        (
            [{"name": "p", "port": 1, "proto": "sctp", "sources": ["any"]}],
            ADMIN,
            HOSTVARS,
            "proto must be one of",
        ),
        (
            [{"name": "p", "port": 1, "direction": "both", "sources": ["any"]}],
            ADMIN,
            HOSTVARS,
            "direction must be",
        ),
        ([{"name": "p", "port": 1}], ADMIN, HOSTVARS, "needs a non-empty list sources"),
        (
            [{"name": "p", "port": 1, "sources": "registry"}],
            ADMIN,
            HOSTVARS,
            "non-empty list sources",
        ),
        (
            [{"name": "p", "port": 1, "direction": "out", "sources": ["any"]}],
            ADMIN,
            HOSTVARS,
            "destinations",
        ),
        (
            [{"name": "v", "proto": "vrrp", "port": 112, "sources": ["lb"]}],
            ADMIN,
            HOSTVARS,
            "takes no port",
        ),
        (
            [{"name": "p", "port": 1, "hosts": "db", "sources": ["any"]}],
            ADMIN,
            HOSTVARS,
            "hosts must be a list",
        ),
        (["ssh"], ADMIN, HOSTVARS, "rule #0 is not a dict"),
        # A source host without an address is an error naming it, never a narrower rule.
        (
            [{"name": "pg", "port": 5432, "sources": ["registry"]}],
            ADMIN,
            {**HOSTVARS, "reg2": {"ansible_host": "reg2.example.internal"}},
            "no address for host 'reg2'",
        ),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rules, admin, hostvars, message):
    with pytest.raises(AnsibleFilterError, match=None) as raised:
        plan(rules, ["db"], admin=admin, hostvars=hostvars)
    assert message in str(raised.value)


def test_rules_of_other_hosts_are_checked_too():
    # A typo is caught on every host, not only on the hosts the rule is for.
    with pytest.raises(AnsibleFilterError, match="proto"):
        plan(
            [{"name": "p", "port": 1, "proto": "tpc", "hosts": ["db"], "sources": ["any"]}], ["lb"]
        )


@pytest.mark.parametrize(
    ("address", "networks", "admitted"),
    [
        ("10.213.4.1", ["10.213.4.1/32"], True),
        ("10.213.4.1", ["10.213.4.1"], True),
        ("10.213.4.1", ["10.213.0.0/16"], True),
        ("10.213.4.1", ["10.213.5.0/24", "192.0.2.1"], False),
        ("2001:db8::5", ["10.0.0.0/8", "2001:db8::/64"], True),
        ("10.0.0.1", [], False),
    ],
)
def test_firewall_admits(address, networks, admitted):
    assert firewall_admits(address, networks) is admitted


def test_firewall_admits_refuses_what_is_not_an_address():
    with pytest.raises(AnsibleFilterError):
        firewall_admits("controller", ["10.0.0.0/8"])
    with pytest.raises(AnsibleFilterError):
        firewall_admits("10.0.0.1", ["ten"])


def test_each_filter_is_exported_by_its_own_file():
    assert set(plan_plugin.FilterModule().filters()) == {"firewall_plan"}
    assert set(admits_plugin.FilterModule().filters()) == {"firewall_admits"}


def _default_rules(ssh_port=22, apt_ports=(80, 443)):
    """The role's base_firewall_rules with the two templated fields filled in."""
    rules = yaml.safe_load(ROLE_DEFAULTS.read_text())["base_firewall_rules"]
    filled = []
    for default in rules:
        rule = dict(default)
        if rule.get("port") == "{{ base_firewall_ssh_port }}":
            rule["port"] = ssh_port
        elif rule.get("port") == "{{ __base_apt_ports }}":
            rule["port"] = list(apt_ports)
        filled.append(rule)
    return filled


def _open_to(entries, port, proto="tcp"):
    return sorted(
        e["address"]
        for e in entries
        if e["direction"] == "in" and e["port"] == port and e["proto"] == proto
    )


# The plan as docs/CONVENTIONS.md and the role README state it, host by host.
@pytest.mark.parametrize(
    ("host_groups", "port", "sources"),
    [
        (["db", "cache"], 5432, ["10.0.1.11", "10.0.1.12", "10.0.2.11"]),
        (["db", "cache"], 6379, ["10.0.1.11", "10.0.1.12", "10.0.2.11"]),
        (["db", "cache"], 26379, ["10.0.1.11", "10.0.1.12", "10.0.2.11"]),
        (["db", "cache"], 9187, ["10.0.3.11"]),
        (["db", "cache"], 9121, ["10.0.3.11"]),
        (["db", "cache"], 8008, ["10.0.2.11", "10.0.3.11", "192.0.2.0/24", "198.51.100.7"]),
        (["db", "cache"], 22, ["192.0.2.0/24", "198.51.100.7"]),
        (["registry"], 8081, ["10.0.0.11"]),
        (["registry"], 8082, ["10.0.0.11"]),
        (["registry"], 9181, ["10.0.3.11"]),
        (["registry"], 9100, ["10.0.3.11"]),
        (["registry"], 5432, []),
        (["lb"], 8080, ["any"]),
        (["lb"], 8404, ["10.0.3.11", "192.0.2.0/24", "198.51.100.7"]),
        (["monitoring", "bench"], 9091, ["10.0.3.11"]),
        (["monitoring", "bench"], 9090, ["10.0.3.11", "192.0.2.0/24", "198.51.100.7"]),
        (["monitoring", "bench"], 9093, ["10.0.3.11", "192.0.2.0/24", "198.51.100.7"]),
        (["monitoring", "bench"], 9095, ["10.0.3.11", "192.0.2.0/24", "198.51.100.7"]),
        (["monitoring", "bench"], 3000, ["192.0.2.0/24", "198.51.100.7"]),
    ],
)
def test_default_rules_open_each_port_to_its_sources_only(host_groups, port, sources):
    assert _open_to(plan(_default_rules(), host_groups), port) == sources


def test_default_rules_limit_what_registry_hosts_reach():
    out = [
        e for e in plan(_default_rules(apt_ports=(3142,)), ["registry"]) if e["direction"] == "out"
    ]
    assert sorted((e["proto"], e["port"], e["address"]) for e in out) == [
        ("tcp", 53, "any"),
        ("tcp", 3142, "any"),
        ("tcp", 5432, "10.0.2.11"),
        ("tcp", 6379, "10.0.2.11"),
        ("tcp", 26379, "10.0.2.11"),
        ("udp", 53, "any"),
        ("udp", 123, "any"),
    ]
    # Other hosts carry no outbound rule.
    assert [e for e in plan(_default_rules(), ["lb"]) if e["direction"] == "out"] == []


def test_pgbackrest_ssh_only_between_db_and_backup_hosts():
    groups = {**GROUPS, "backup": ["bk1"], "all": [*GROUPS["all"], "bk1"]}
    hostvars = {**HOSTVARS, "bk1": {"ansible_host": "10.0.4.11"}}
    on_db = plan(_default_rules(), ["db"], groups=groups, hostvars=hostvars)
    on_backup = plan(_default_rules(), ["backup"], groups=groups, hostvars=hostvars)
    assert _open_to(on_db, 22) == ["10.0.4.11", "192.0.2.0/24", "198.51.100.7"]
    assert _open_to(on_backup, 22) == ["10.0.2.11", "192.0.2.0/24", "198.51.100.7"]
