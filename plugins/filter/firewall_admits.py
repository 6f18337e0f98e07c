# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
name: firewall_admits
short_description: Whether an address is inside one of a list of networks
version_added: 1.1.0
author: llmops maintainers
description:
  - True when the input address is one of O(networks) or inside one of them. Role
    C(llmops.registry.base) uses it to refuse admin networks that would lock out the SSH
    session Ansible runs in.
options:
  _input:
    description: An IPv4 or IPv6 address.
    type: str
    required: true
  networks:
    description: Addresses and networks (C(192.0.2.1), C(192.0.2.0/24)).
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse admin networks without the controller
  ansible.builtin.assert:
    that: "'192.0.2.7' | llmops.registry.firewall_admits(['192.0.2.0/24'])"
  # true: 192.0.2.7 is inside 192.0.2.0/24
"""

RETURN = r"""
_value:
  description: Whether the address is inside one of the networks.
  type: bool
"""

import ipaddress  # noqa: E402 - docs come first in plugins

from ansible.errors import AnsibleFilterError  # noqa: E402


def firewall_admits(address, networks):
    """Whether `address` is inside one of `networks` (addresses or CIDR networks)."""
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError as error:
        raise AnsibleFilterError(f"firewall_admits: {address!r} is not an IP address") from error
    for text in networks or []:
        try:
            network = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError as error:
            raise AnsibleFilterError(
                f"firewall_admits: {text!r} is not an IP address or network"
            ) from error
        if ip.version == network.version and ip in network:
            return True
    return False


class FilterModule:
    """Address-in-networks test for role llmops.registry.base."""

    def filters(self):
        return {"firewall_admits": firewall_admits}
