"""Networking of a lab: bridges and subnets, iptables NAT and forwarding rules,
IPv4 forwarding, inotify limits, and host veth leftovers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import labpaths
from labcore import LabError, bridge_mac, gateway_address
from labsys import locked, run

IPT_COMMENT_PREFIX = "llmops-lab:"


def taken_networks() -> list[ipaddress.IPv4Network]:
    """Networks already addressed or routed on this machine."""
    networks: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in entry.get("addr_info", []):
            networks.append(
                ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            )
    routes = run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout
    for route in json.loads(routes or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("local", "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.IPv4Network(dst, strict=False))
    return networks


def iptables_rules(state: dict[str, Any]) -> list[list[str]]:
    """The rules a lab adds: NAT out for apt, and forwarding to and from its bridge."""
    bridge = state["bridge"]
    subnet = state["subnet"]
    comment = ["-m", "comment", "--comment", f"{IPT_COMMENT_PREFIX}{state['lab']}"]
    return [
        ["-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE", *comment],
        ["-t", "filter", "FORWARD", "-i", bridge, "-j", "ACCEPT", *comment],
        ["-t", "filter", "FORWARD", "-o", bridge, "-j", "ACCEPT", *comment],
    ]


def iptables(action: str, rule: list[str]) -> bool:
    table_args, chain, spec = rule[:2], rule[2], rule[3:]
    cmd = ["iptables", "-w", *table_args, action, chain, *spec]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if action != "-C" and result.returncode != 0:
        raise LabError(f"iptables failed: {' '.join(cmd)}: {result.stderr.strip()}")
    return result.returncode == 0


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def setup_network(state: dict[str, Any]) -> None:
    bridge = state["bridge"]
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
    # A bridge without an address of its own takes the lowest of its ports' MACs, so
    # killing that host changed the gateway's MAC under every other host: their replies
    # went to the old one until ARP caught up, stalling all traffic of the lab (seen as
    # every in-flight request of a fault drill timing out at once).
    run(["ip", "link", "set", "dev", bridge, "address", bridge_mac(state["index"])])
    gateway = f"{gateway_address(state['index'])}/24"
    addrs = run(["ip", "-j", "-4", "addr", "show", "dev", bridge]).stdout
    if gateway.split("/", maxsplit=1)[0] not in addrs:
        run(["ip", "addr", "add", gateway, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    with locked("labs"):
        enable_forwarding()
        raise_inotify_limits()
    for rule in iptables_rules(state):
        if not iptables("-C", rule):
            iptables("-A", rule)


def teardown_network(state: dict[str, Any]) -> None:
    for rule in iptables_rules(state):
        while iptables("-C", rule):
            iptables("-D", rule)
    if link_exists(state["bridge"]):
        run(["ip", "link", "del", state["bridge"]])


def enable_forwarding() -> None:
    """Turn on IPv4 forwarding for NAT, remembering the old value for the last `down`."""
    knob = Path("/proc/sys/net/ipv4/ip_forward")
    current = knob.read_text().strip()
    if current != "1":
        if not labpaths.FORWARD_SAVED.exists():
            labpaths.FORWARD_SAVED.write_text(current + "\n")
        knob.write_text("1\n")


# Every lab host's systemd and its services run as the build machine's root and each
# takes inotify instances: the kernel's default of 128 per user stops the 20th host or
# so from booting ("Too many open files"). Raised, never lowered.
INOTIFY_LIMITS = {
    "/proc/sys/fs/inotify/max_user_instances": 4096,
    "/proc/sys/fs/inotify/max_user_watches": 524288,
}


def raise_inotify_limits() -> None:
    for path, wanted in INOTIFY_LIMITS.items():
        knob = Path(path)
        with contextlib.suppress(OSError, ValueError):
            if int(knob.read_text()) < wanted:
                knob.write_text(f"{wanted}\n")


def restore_forwarding() -> None:
    if labpaths.FORWARD_SAVED.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(labpaths.FORWARD_SAVED.read_text())
        labpaths.FORWARD_SAVED.unlink()


def orphan_rule_owner(rule: str, labs: set[str]) -> str | None:
    """The lab named in an `iptables -S` line's llmops-lab: comment, if that lab is gone."""
    words = shlex.split(rule)
    if not words or words[0] != "-A" or "--comment" not in words:
        return None
    comment = words[words.index("--comment") + 1]
    if not comment.startswith(IPT_COMMENT_PREFIX):
        return None
    owner = comment.removeprefix(IPT_COMMENT_PREFIX)
    return None if owner in labs else owner


def clear_host_veth(host: dict[str, Any]) -> None:
    """nspawn names the host side of a host's veth vb-<machine>; after a SIGKILL the
    kernel removes it only when the host's network namespace is gone, which may lag, and
    a boot meanwhile fails with "File exists". Wait for it, then remove it ourselves."""
    name = f"vb-{host['machine']}"
    if len(name) > 15:  # nspawn shortens such names: nothing we can name safely
        return
    deadline = time.monotonic() + 10
    while link_exists(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    if link_exists(name):
        with contextlib.suppress(LabError):  # gone meanwhile
            run(["ip", "link", "del", name])
