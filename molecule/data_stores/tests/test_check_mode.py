"""A converged host stays unchanged under --check (the idempotence step covers real runs)."""

from __future__ import annotations

import re

testinfra_hosts = ["db1"]


def test_check_mode_reports_no_change(run_playbook):
    # Runs once for the whole scenario: testinfra_hosts names a single host.
    result = run_playbook("converge.yml", "--check", "--diff")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    recap = re.findall(r"(\S+) : ok=\d+ changed=(\d+)", result.stdout)
    assert len(recap) == 3, result.stdout[-2000:]
    assert all(changed == "0" for _unused, changed in recap), result.stdout[-5000:]
