"""The Makefile's operator-facing output: help shows values, long targets say what they do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _make(*args: str) -> str:
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_help_shows_values_not_variable_references():
    out = _make("help", "MOLECULE_JOBS=3")
    assert "$(" not in out
    assert re.search(r"^\s+molecule\s+.*\b3 at a time\b", out, re.MULTILINE), out


def test_lab_down_says_what_it_does_before_the_silent_minute():
    # Dry run: nothing is stopped; the first thing the recipe does is print.
    first = _make("-n", "lab-down", "LAB=nonexistent").splitlines()[0]
    assert first.startswith("echo ") and "nonexistent" in first and "minute" in first


def test_demo_announces_and_times_every_phase():
    # The demo's real phases take minutes; `help` stands in for them (same loop).
    out = _make("demo", "DEMO_PHASES=help help")
    assert re.search(r"^=== demo \[1/2\] help: starting at \+\d+ s$", out, re.MULTILINE), out
    assert re.search(r"^=== demo \[2/2\] help: done in \d+ s$", out, re.MULTILINE), out
    assert re.search(r"^=== demo: done in \d+ s$", out, re.MULTILINE), out
