"""Lab hosts, the scenario's secrets and the project's playbooks, for the DR drills."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import testinfra
import testinfra.host
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SCENARIO_DIR.parent / "shared"))

from playbooks import Playbooks  # noqa: E402 - the shared helper lives beside the scenarios


@pytest.fixture(scope="session")
def playbooks() -> Playbooks:
    return Playbooks()


@pytest.fixture(scope="session")
def lab_host() -> Callable[[str], testinfra.host.Host]:
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]

    def get(name: str) -> testinfra.host.Host:
        return testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory)

    return get


@pytest.fixture(scope="session")
def addresses() -> dict[str, str]:
    with open(os.environ["MOLECULE_INSTANCE_CONFIG"], encoding="utf-8") as handle:
        return {item["instance"]: item["address"] for item in yaml.safe_load(handle)}


@pytest.fixture(scope="session")
def group_vars() -> dict:
    with open(SCENARIO_DIR / "molecule.yml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)["provisioner"]["inventory"]["group_vars"]["all"]
