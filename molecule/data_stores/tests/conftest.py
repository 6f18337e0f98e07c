"""Shared helpers: test secrets, lab addresses, other hosts, running playbooks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = SCENARIO_DIR.parent.parent
SHARED = PROJECT_DIR / "molecule" / "shared"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from lab_fixtures import addresses, lab_host  # noqa: E402 - pytest fixtures from molecule/shared

# Re-exported so pytest sees the shared fixtures (and linters see them used).
__all__ = ["addresses", "lab_host"]


@pytest.fixture(scope="session")
def secrets() -> dict[str, str]:
    with open(SCENARIO_DIR / "vars" / "test_secrets.yml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="session")
def run_playbook() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs a playbook of the project against the scenario's hosts."""
    ansible_playbook = Path(sys.executable).parent / "ansible-playbook"

    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "COLUMNS": "1000"}

    def run(playbook: str, *args: str) -> subprocess.CompletedProcess[str]:
        """stdout (with stderr appended) comes back with whitespace collapsed (no wrapping)."""
        # Scenario playbooks by their name, project playbooks by their path in the checkout.
        in_scenario = SCENARIO_DIR / playbook
        path = str(in_scenario if in_scenario.exists() else PROJECT_DIR / playbook)
        # Fixed argv (our ansible-playbook, no shell); only test arguments vary.
        result = subprocess.run(  # noqa: S603 - see the comment above
            [str(ansible_playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"], path, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
            cwd=SCENARIO_DIR,
            env=env,
        )
        # Failures are reported on stderr: keep both, in order of importance.
        result.stdout = " ".join((result.stdout + "\n" + result.stderr).split())
        return result

    return run
