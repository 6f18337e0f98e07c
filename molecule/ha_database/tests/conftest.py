"""Shared helpers of the ha_database verifier."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from playbooks import Playbooks  # noqa: E402 - molecule/shared is on the path from here on


@pytest.fixture(scope="session")
def playbooks() -> Playbooks:
    return Playbooks()
