"""The scenario's inventory as the verifiers read it: hosts of a group, a host's
variables, and a host to run commands on (as root)."""

from __future__ import annotations

import os

import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "/nonexistent")
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)


def hosts(group: str) -> list[str]:
    return RUNNER.get_hosts(group)


def host_vars(host: str) -> dict:
    return RUNNER.get_variables(host)


def node(name: str):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True)
