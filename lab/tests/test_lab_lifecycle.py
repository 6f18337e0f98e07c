"""labctl.py end to end on real systemd-nspawn hosts (needs root and the base rootfs).

Run: sudo .venv/bin/pytest lab/tests   (about a minute once the base exists)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

LABCTL = Path(__file__).resolve().parents[1] / "labctl.py"
sys.path.insert(0, str(LABCTL.parent))
import labctl as labctl_module  # noqa: E402 - the tool under test, for its ssh options

LAB_ROOT = Path(os.environ.get("LLMOPS_LAB_ROOT", "/var/lib/llmops-lab"))
# Fixed names: the apt caches and lock files kept per lab name are reused, not piled up.
LAB_A = "lifecycle-a"
LAB_B = "lifecycle-b"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def labctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LABCTL), *args], capture_output=True, text=True, check=False
    )


def ssh(lab: str, address: str, command: str) -> subprocess.CompletedProcess[str]:
    key = LAB_ROOT / "labs" / lab / "id_ed25519"
    return subprocess.run(
        [
            *labctl_module.ssh_command(key, 5),
            f"lab@{address}",
            command,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def state(lab: str) -> dict:
    return json.loads((LAB_ROOT / "run" / lab / "state.json").read_text())


def traces(lab_state: dict) -> list[str]:
    """Everything of a lab that `down` must remove; empty when it is gone."""
    found = []
    machines = {host["machine"] for host in lab_state["hosts"]}
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    found += [
        line
        for line in ps.stdout.splitlines()
        if any(m in line for m in machines) and "systemd-nspawn" in line
    ]
    if Path(f"/sys/class/net/{lab_state['bridge']}").exists():
        found.append(f"bridge {lab_state['bridge']}")
    for table in ("nat", "filter"):
        rules = subprocess.run(
            ["iptables", "-w", "-t", table, "-S"], capture_output=True, text=True, check=True
        ).stdout
        found += [rule for rule in rules.splitlines() if f"llmops-lab:{lab_state['lab']}" in rule]
    mounts = Path("/proc/self/mountinfo").read_text()
    run_dir = str(LAB_ROOT / "run" / lab_state["lab"])
    found += [line for line in mounts.splitlines() if run_dir in line]
    if Path(run_dir).exists():
        found.append(run_dir)
    found += [str(p) for p in Path(lab_state["state_dir"]).glob("*")]
    return found


@pytest.fixture(scope="module")
def labs() -> Iterator[dict[str, dict]]:
    """Two labs booted at the same time."""
    with ThreadPoolExecutor(2) as pool:
        up_a = pool.submit(labctl, "up", "--lab", LAB_A, "--host", "a1:web,db", "--host", "a2:web")
        up_b = pool.submit(labctl, "up", "--lab", LAB_B, "--host", "b1")
        results = [up_a.result(), up_b.result()]
    try:
        for result in results:
            assert result.returncode == 0, result.stderr
        yield {LAB_A: state(LAB_A), LAB_B: state(LAB_B)}
    finally:
        labctl("down", "--lab", LAB_A)
        labctl("down", "--lab", LAB_B)


def test_labs_get_their_own_bridge_and_subnet(labs: dict[str, dict]) -> None:
    a, b = labs[LAB_A], labs[LAB_B]
    assert a["bridge"] != b["bridge"]
    assert a["subnet"] != b["subnet"]
    assert all(Path(f"/sys/class/net/{s['bridge']}").exists() for s in (a, b))


def test_inventory_reaches_hosts_over_ssh_with_become(labs: dict[str, dict]) -> None:
    inventory = yaml.safe_load((LAB_ROOT / "labs" / LAB_A / "inventory.yml").read_text())
    assert set(inventory["all"]["children"]["web"]["hosts"]) == {"a1", "a2"}
    address = inventory["all"]["hosts"]["a1"]["ansible_host"]
    result = ssh(LAB_A, address, "id -un; sudo -n id -un; cat /proc/1/comm; hostname")
    assert result.stdout.split() == ["lab", "root", "systemd", "a1"], result.stderr


def test_hosts_have_distinct_identities(labs: dict[str, dict]) -> None:
    ids = set()
    keys = set()
    for host in labs[LAB_A]["hosts"]:
        out = ssh(LAB_A, host["address"], "cat /etc/machine-id /etc/ssh/ssh_host_ed25519_key.pub")
        machine_id, key = out.stdout.splitlines()[:2]
        ids.add(machine_id)
        keys.add(key.split()[1])
    assert len(ids) == 2
    assert len(keys) == 2


def test_host_reaches_the_other_host_and_the_outside(labs: dict[str, dict]) -> None:
    a1, a2 = labs[LAB_A]["hosts"]
    probe = f"python3 -c 'import socket; socket.create_connection((\"{a2['address']}\", 22), 3)'"
    assert ssh(LAB_A, a1["address"], probe).returncode == 0
    # NAT and the build machine's resolver: the Debian mirror answers.
    mirror = (
        "python3 -c 'import urllib.request as u; "
        'print(u.urlopen("http://deb.debian.org/debian/dists/bookworm/Release", '
        "timeout=20).status)'"
    )
    assert ssh(LAB_A, a1["address"], mirror).stdout.strip() == "200"


def test_up_again_is_a_no_op(labs: dict[str, dict]) -> None:
    before = state(LAB_A)
    result = labctl("up", "--lab", LAB_A, "--host", "a1:web,db", "--host", "a2:web")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(LAB_ROOT / "labs" / LAB_A / "inventory.yml")
    assert [h["pid"] for h in state(LAB_A)["hosts"]] == [h["pid"] for h in before["hosts"]]


def test_up_with_other_hosts_is_refused_and_changes_nothing(labs: dict[str, dict]) -> None:
    before = state(LAB_A)
    result = labctl("up", "--lab", LAB_A, "--host", "a1")
    assert result.returncode == 1
    assert "already up with other hosts" in result.stderr
    assert state(LAB_A) == before


def test_a_rebooted_host_stays_down_until_up_boots_it_again(labs: dict[str, dict]) -> None:
    host = labs[LAB_B]["hosts"][0]
    machine_id = ssh(LAB_B, host["address"], "cat /etc/machine-id").stdout
    ssh(LAB_B, host["address"], "sudo -n systemctl --no-block reboot")
    pid = state(LAB_B)["hosts"][0]["pid"]
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "host did not exit nspawn on reboot"
        time.sleep(0.5)
    listing = labctl("list").stdout.splitlines()
    b1_line = listing[listing.index(next(line for line in listing if line.startswith(LAB_B))) + 1]
    assert b1_line.split()[:3] == ["b1", host["address"], "stopped"]
    result = labctl("up", "--lab", LAB_B, "--host", "b1")
    assert result.returncode == 0, result.stderr
    # same disk (upper dir kept): same machine-id
    assert ssh(LAB_B, host["address"], "cat /etc/machine-id").stdout == machine_id


def test_killing_a_host_leaves_the_gateway_mac_alone(labs: dict[str, dict]) -> None:
    """A bridge follows the lowest MAC of its ports unless given one: killing the host
    whose port had it changed the gateway's MAC under the other hosts."""
    bridge = Path("/sys/class/net") / labs[LAB_A]["bridge"]
    before = (bridge / "address").read_text()
    ports = {
        port.name: Path("/sys/class/net", port.name, "address").read_text()
        for port in (bridge / "brif").iterdir()
    }
    lowest = min(ports, key=lambda name: int(ports[name].strip().replace(":", ""), 16))
    victim = next(h for h in labs[LAB_A]["hosts"] if lowest == f"vb-{h['machine']}")
    other = next(h for h in labs[LAB_A]["hosts"] if h is not victim)
    assert labctl("kill", "--lab", LAB_A, "--host", victim["name"]).returncode == 0
    try:
        assert (bridge / "address").read_text() == before
        assert ssh(LAB_A, other["address"], "true").returncode == 0
    finally:
        assert labctl("boot", "--lab", LAB_A, "--host", victim["name"]).returncode == 0


def test_down_leaves_nothing_behind_and_is_safe_twice(labs: dict[str, dict]) -> None:
    for lab in (LAB_A, LAB_B):
        lab_state = state(lab)
        assert traces(lab_state)  # sanity: the checks see a running lab
        first = labctl("down", "--lab", lab)
        assert first.returncode == 0, first.stderr
        assert traces(lab_state) == []
        second = labctl("down", "--lab", lab)
        assert second.returncode == 0
        assert "not up" in second.stderr
