# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
name: firewall_plan
short_description: Turn firewall rules by inventory group into concrete address entries
version_added: 1.1.0
author: llmops maintainers
description:
  - Takes the firewall rules of role C(llmops.registry.base) (which port, on which hosts,
    from which sources) and returns, for one host, every (direction, protocol, port,
    address) the firewall must let through.
  - A rule applies to the host when one of the host's groups (or C(all)) is in the
    rule's O(_input[].hosts). Its sources (direction C(in)) or destinations (direction
    C(out)) are inventory group names, C(admin) (the O(admin_networks)), C(any) (every
    address) or literal addresses and networks.
  - A host's address is C(ansible_default_ipv4.address) from its facts, else its
    C(ansible_host) when that is an IP address. A host of a source group without either
    is an error naming the host, never a silently narrower firewall.
  - Entries come back sorted and without duplicates, so the rendered ruleset is the
    same on every run.
options:
  _input:
    description: The rules.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: What the rule is for; the nftables comment.
        type: str
        required: true
      port:
        description:
          - Port or list of ports (1-65535). Required unless O(_input[].proto=vrrp).
        type: raw
      proto:
        description: Protocol. C(vrrp) is IP protocol 112 and takes no port.
        type: str
        choices: [tcp, udp, vrrp]
        default: tcp
      direction:
        description: C(in) limits who may reach the host, C(out) where the host may connect.
        type: str
        choices: [in, out]
        default: in
      hosts:
        description: Inventory groups whose hosts carry the rule; C(all) is every host.
        type: list
        elements: str
        default: [all]
      sources:
        description:
          - Direction C(in) - who may connect. Group names, C(admin), C(any), or
            addresses and networks (C(10.0.0.5), C(10.0.0.0/24)).
        type: list
        elements: str
      destinations:
        description:
          - Direction C(out) - where the host may connect; the forms of O(_input[].sources).
        type: list
        elements: str
  groups:
    description: The inventory's C(groups) (group name to host names).
    type: dict
    required: true
  hostvars:
    description: The inventory's C(hostvars), for the addresses of the hosts of the groups.
    type: dict
    required: true
  group_names:
    description: The groups of the host the plan is for (its C(group_names)).
    type: list
    elements: str
    required: true
  admin_networks:
    description:
      - Addresses and networks that C(admin) stands for (role base passes
        C(base_firewall_admin_networks)). A rule that names C(admin) while this is
        empty is an error.
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Show what reaches PostgreSQL on this host
  ansible.builtin.debug:
    msg: >-
      {{ [{'name': 'postgresql', 'port': 5432, 'hosts': ['db'], 'sources': ['registry', 'db']},
          {'name': 'ssh', 'port': 22, 'sources': ['admin']}]
         | llmops.registry.firewall_plan(groups, hostvars, group_names, ['192.0.2.1/32']) }}
    # On a db host, with registry hosts 10.0.1.11 and 10.0.1.12 and db host 10.0.2.11:
    # [{"direction": "in", "proto": "tcp", "port": 22, "address": "192.0.2.1", "name": "ssh", ...},
    #  {"direction": "in", "proto": "tcp", "port": 5432, "address": "10.0.1.11", ...},
    #  {"direction": "in", "proto": "tcp", "port": 5432, "address": "10.0.1.12", ...},
    #  {"direction": "in", "proto": "tcp", "port": 5432, "address": "10.0.2.11", ...}]
"""

RETURN = r"""
_value:
  description:
    - One entry per direction, protocol, port and address, sorted.
  type: list
  elements: dict
  contains:
    direction:
      description: C(in) or C(out).
      type: str
    proto:
      description: C(tcp), C(udp) or C(vrrp).
      type: str
    port:
      description: The port; null for C(vrrp).
      type: int
    address:
      description:
        - The source (C(in)) or destination (C(out)) address or network, or C(any).
          A single address has no prefix length.
      type: str
    family:
      description: C(ip) or C(ip6) for an address or network, empty for C(any).
      type: str
    name:
      description: The name of the (first) rule the entry comes from.
      type: str
"""

import ipaddress  # noqa: E402 - docs come first in plugins
from collections.abc import Mapping  # noqa: E402

from ansible.errors import AnsibleFilterError  # noqa: E402

PROTOCOLS = ("tcp", "udp", "vrrp")
DIRECTIONS = ("in", "out")
_FAMILY_ORDER = {"": 0, "ip": 1, "ip6": 2}


def _network(text):
    """An ip_network for an address or network literal, None for a group name."""
    try:
        return ipaddress.ip_network(str(text).strip(), strict=False)
    except ValueError:
        return None


def _literal(network):
    """(address text, family) of a network: a single address without its prefix."""
    family = "ip" if network.version == 4 else "ip6"
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address), family
    return str(network), family


def _lookup(mapping, *keys):
    """mapping[k1][k2]... or None when any key is missing."""
    value = mapping
    for key in keys:
        try:
            value = value[key]
        # hostvars raise KeyError, TypeError or an undefined-variable error for what is
        # not there: every one of them means "no such value" here.
        except Exception:
            return None
    return value


def host_address(hostvars, host):
    """The address other hosts reach `host` at: its default IPv4 fact, else ansible_host."""
    fact = _lookup(hostvars, host, "ansible_default_ipv4", "address")
    if fact and _network(fact) is not None:
        return _literal(_network(fact))
    configured = _lookup(hostvars, host, "ansible_host")
    if configured and _network(configured) is not None and "/" not in str(configured):
        return _literal(_network(configured))
    raise AnsibleFilterError(
        f"firewall_plan: no address for host {host!r}: gather its network facts "
        "(ansible_default_ipv4) or set its ansible_host to an IP address"
    )


def _ports(rule, name):
    port = rule.get("port")
    if rule["proto"] == "vrrp":
        if port not in (None, "", []):
            raise AnsibleFilterError(f"firewall_plan: rule {name!r}: proto vrrp takes no port")
        return [None]
    ports = port if isinstance(port, (list, tuple)) else [port]
    if not ports or any(item in (None, "") for item in ports):
        raise AnsibleFilterError(f"firewall_plan: rule {name!r} needs a port")
    result = []
    for item in ports:
        try:
            number = int(str(item).strip())
        except ValueError:
            number = 0
        if not 1 <= number <= 65535:
            raise AnsibleFilterError(
                f"firewall_plan: rule {name!r}: port {item!r} is not a number from 1 to 65535"
            )
        result.append(number)
    return result


def _check_rule(rule, index):
    if not isinstance(rule, Mapping):
        raise AnsibleFilterError(f"firewall_plan: rule #{index} is not a dict: {rule!r}")
    name = str(rule.get("name") or f"#{index}")
    proto = str(rule.get("proto", "tcp"))
    direction = str(rule.get("direction", "in"))
    if proto not in PROTOCOLS:
        raise AnsibleFilterError(
            f"firewall_plan: rule {name!r}: proto must be one of "
            f"{', '.join(PROTOCOLS)}, not {proto!r}"
        )
    if direction not in DIRECTIONS:
        raise AnsibleFilterError(
            f"firewall_plan: rule {name!r}: direction must be in or out, not {direction!r}"
        )
    peers_key = "sources" if direction == "in" else "destinations"
    peers = rule.get(peers_key)
    if isinstance(peers, str) or not isinstance(peers, (list, tuple)) or not peers:
        raise AnsibleFilterError(
            f"firewall_plan: rule {name!r} (direction {direction}) "
            f"needs a non-empty list {peers_key}"
        )
    hosts = rule.get("hosts", ["all"])
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"firewall_plan: rule {name!r}: hosts must be a list of groups")
    checked = {
        "name": name,
        "proto": proto,
        "direction": direction,
        "hosts": [str(h) for h in hosts],
    }
    checked["ports"] = _ports({**rule, "proto": proto}, name)
    checked["peers"] = [str(peer) for peer in peers]
    return checked


def _admin(admin_networks, name):
    if not admin_networks:
        raise AnsibleFilterError(
            f"firewall_plan: rule {name!r} admits the admin networks, but admin_networks "
            "(base_firewall_admin_networks) is empty"
        )
    result = []
    for text in admin_networks:
        network = _network(text)
        if network is None:
            raise AnsibleFilterError(
                f"firewall_plan: admin network {text!r} (base_firewall_admin_networks) is not an "
                "IP address or network"
            )
        result.append(_literal(network))
    return result


def _addresses(peer, rule_name, groups, hostvars, admin_networks):
    """(address, family) pairs a source or destination stands for."""
    if peer == "any":
        return [("any", "")]
    if peer == "admin":
        return _admin(admin_networks, rule_name)
    network = _network(peer)
    if network is not None:
        return [_literal(network)]
    return [host_address(hostvars, host) for host in (groups.get(peer) or [])]


def firewall_plan(rules, groups, hostvars, group_names, admin_networks=None):
    """Concrete (direction, proto, port, address) entries of `rules` for one host."""
    if rules is None:
        return []
    if not isinstance(rules, (list, tuple)):
        raise AnsibleFilterError(
            f"firewall_plan: the rules must be a list, got {type(rules).__name__}"
        )
    if not isinstance(groups, Mapping):
        raise AnsibleFilterError("firewall_plan: groups must be the inventory's groups (a dict)")
    mine = set(group_names or []) | {"all"}
    admin = list(admin_networks or [])
    entries = {}
    for index, raw in enumerate(rules):
        rule = _check_rule(raw, index)
        if not mine.intersection(rule["hosts"]):
            continue
        for peer in rule["peers"]:
            for address, family in _addresses(peer, rule["name"], groups, hostvars, admin):
                for port in rule["ports"]:
                    key = (
                        rule["direction"],
                        rule["proto"],
                        port or 0,
                        _FAMILY_ORDER[family],
                        address,
                    )
                    entries.setdefault(
                        key,
                        {
                            "direction": rule["direction"],
                            "proto": rule["proto"],
                            "port": port,
                            "address": address,
                            "family": family,
                            "name": rule["name"],
                        },
                    )
    return [entries[key] for key in sorted(entries, key=_sort_key)]


def _sort_key(key):
    direction, proto, port, family, address = key
    if address == "any":
        order = (0, 0, b"")
    else:
        network = ipaddress.ip_network(address, strict=False)
        order = (1, network.version, network.network_address.packed + bytes([network.prefixlen]))
    return (direction, proto, port, family, order)


class FilterModule:
    """Firewall plans for role llmops.registry.base."""

    def filters(self):
        return {"firewall_plan": firewall_plan}
