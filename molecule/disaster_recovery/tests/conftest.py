"""Lab hosts, the scenario's secrets and the project's playbooks, for the DR drills."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SCENARIO_DIR.parent / "shared"))

from lab_fixtures import (  # noqa: E402 - pytest fixtures from molecule/shared
    addresses,
    lab_host,
    playbooks,
)

# Re-exported so pytest sees the shared fixtures (and linters see them used).
__all__ = ["addresses", "lab_host", "playbooks"]


@pytest.fixture(scope="session")
def group_vars() -> dict:
    with open(SCENARIO_DIR / "molecule.yml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)["provisioner"]["inventory"]["group_vars"]["all"]
