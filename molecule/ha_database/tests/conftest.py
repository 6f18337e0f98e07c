"""Shared helpers of the ha_database verifier."""

from __future__ import annotations

import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
if str(SHARED) not in sys.path:
    sys.path.insert(0, str(SHARED))

from lab_fixtures import addresses, lab_host, playbooks  # noqa: E402 - pytest fixtures from molecule/shared

# Re-exported so pytest sees the shared fixtures (and linters see them used).
__all__ = ["addresses", "lab_host", "playbooks"]
