"""pytest fixtures for the tests of any lab-backed scenario: the project's playbooks,
the scenario's hosts by name and their addresses.

A scenario's tests/conftest.py puts molecule/shared on sys.path and imports the
fixtures it uses from here (pytest finds fixtures by their name in the conftest).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import testinfra
import testinfra.host
import yaml

from playbooks import Playbooks


@pytest.fixture(scope="session")
def playbooks() -> Playbooks:
    return Playbooks()


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    """Lab host name -> address, from the instance config the lab wrote."""
    with open(os.environ["MOLECULE_INSTANCE_CONFIG"], encoding="utf-8") as handle:
        return {item["instance"]: item["address"] for item in yaml.safe_load(handle)}


@pytest.fixture(scope="session")
def lab_host() -> Callable[[str], testinfra.host.Host]:
    """Any scenario host by name, for tests that involve two hosts."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]

    def get(name: str) -> testinfra.host.Host:
        return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)

    return get
