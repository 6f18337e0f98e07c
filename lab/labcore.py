"""Pure logic of the lab tool: argument checks, subnet allocation and the files it writes.

Nothing here touches the system, so it is unit tested on its own
(tests/unit/test_lab_core.py). labctl.py does the side effects.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Labs live in 10.213.0.0/16, one /24 each; index 0 and 255 are never handed out.
LAB_POOL = ipaddress.IPv4Network("10.213.0.0/16")
FIRST_INDEX = 1
LAST_INDEX = 254
# Host addresses start at .10; .1 is the bridge (the hosts' gateway).
FIRST_HOST_OCTET = 10
MAX_HOSTS = 200

LAB_USER = "lab"

_LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# A real hostname label: no underscores, no leading or trailing dash.
_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
# An Ansible group name that needs no quoting and triggers no deprecation warning.
_GROUP_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
_RESERVED_GROUPS = frozenset({"all", "ungrouped"})


class LabError(Exception):
    """A problem the user can fix; the message names it."""


@dataclass(frozen=True)
class HostSpec:
    """One `--host NAME[:group,group]` argument."""

    name: str
    groups: tuple[str, ...] = field(default_factory=tuple)


def validate_lab_name(name: str) -> str:
    if not _LAB_NAME.match(name):
        raise LabError(
            f"bad lab name {name!r}: use 1-32 characters a-z, 0-9, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def parse_host_spec(spec: str) -> HostSpec:
    """Parse `NAME` or `NAME:group1,group2` into a HostSpec, refusing bad names."""
    name, _unused, group_part = spec.partition(":")
    if not _HOST_NAME.match(name):
        raise LabError(
            f"bad host name {name!r} in --host {spec!r}: use 1-32 characters a-z, 0-9 "
            "or '-', not starting or ending with '-' (it becomes the hostname)"
        )
    groups: list[str] = []
    if group_part:
        for group in group_part.split(","):
            if not _GROUP_NAME.match(group):
                raise LabError(
                    f"bad group name {group!r} in --host {spec!r}: use a-z, 0-9 and '_', "
                    "starting with a letter or '_'"
                )
            if group in _RESERVED_GROUPS:
                raise LabError(f"group {group!r} in --host {spec!r} is reserved by Ansible")
            if group in groups:
                raise LabError(f"group {group!r} is listed twice in --host {spec!r}")
            groups.append(group)
    elif spec.endswith(":"):
        raise LabError(f"--host {spec!r} has a ':' but no groups after it")
    return HostSpec(name=name, groups=tuple(groups))


def parse_host_specs(specs: Sequence[str]) -> list[HostSpec]:
    """Parse every --host argument; names must be unique within the lab."""
    if not specs:
        raise LabError("give at least one --host NAME[:group,group]")
    if len(specs) > MAX_HOSTS:
        raise LabError(f"at most {MAX_HOSTS} hosts per lab, got {len(specs)}")
    hosts = [parse_host_spec(spec) for spec in specs]
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise LabError(f"host name {host.name!r} is given twice")
        seen.add(host.name)
    return hosts


def lab_network(index: int) -> ipaddress.IPv4Network:
    """The /24 of lab number `index` inside LAB_POOL."""
    if not FIRST_INDEX <= index <= LAST_INDEX:
        raise ValueError(f"lab index {index} is outside {FIRST_INDEX}..{LAST_INDEX}")
    return ipaddress.IPv4Network((int(LAB_POOL.network_address) + index * 256, 24))


def bridge_name(index: int) -> str:
    """Bridge of lab number `index`; short enough for IFNAMSIZ (15)."""
    return f"llmlab{index}"


def bridge_mac(index: int) -> str:
    """Fixed MAC of lab `index`'s bridge: locally administered, unicast, unique per lab."""
    return f"02:6c:6c:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}:01"


def gateway_address(index: int) -> ipaddress.IPv4Address:
    return lab_network(index).network_address + 1


def host_addresses(index: int, count: int) -> list[ipaddress.IPv4Address]:
    """Addresses for `count` hosts of lab `index`, in --host order."""
    if count > MAX_HOSTS:
        raise LabError(f"at most {MAX_HOSTS} hosts per lab, got {count}")
    base = lab_network(index).network_address
    return [base + FIRST_HOST_OCTET + offset for offset in range(count)]


def allocate_index(
    used_indexes: Iterable[int],
    taken_networks: Iterable[ipaddress.IPv4Network],
) -> int:
    """Pick the lowest lab index whose /24 is free.

    used_indexes: indexes recorded by other labs.
    taken_networks: networks already routed or addressed on this machine;
    a /24 that overlaps any of them is skipped (a default route, 0.0.0.0/0,
    is ignored since it overlaps everything).
    """
    used = set(used_indexes)
    taken = [net for net in taken_networks if net.prefixlen > 0]
    for index in range(FIRST_INDEX, LAST_INDEX + 1):
        if index in used:
            continue
        candidate = lab_network(index)
        if any(candidate.overlaps(net) for net in taken):
            continue
        return index
    raise LabError(f"no free /24 left in {LAB_POOL}: run `labctl.py down` for unused labs")


def _yaml_scalar(value: object) -> str:
    # JSON scalars are valid YAML flow scalars, and json quoting is safe for any string.
    return json.dumps(value)


def render_inventory(
    hosts: Sequence[HostSpec],
    addresses: Sequence[ipaddress.IPv4Address],
    key_path: str,
) -> str:
    """The Ansible inventory (YAML) of a lab.

    Become is configured (sudo, no password) but not switched on: playbooks must
    ask for it, as they would on real servers reached by a non-root user.
    """
    lines = [
        "---",
        "# Written by lab/labctl.py; rewritten on every `up`. Do not edit.",
        "all:",
        "  vars:",
        f"    ansible_user: {_yaml_scalar(LAB_USER)}",
        f"    ansible_ssh_private_key_file: {_yaml_scalar(key_path)}",
        # Host keys are fresh on every boot and addresses are reused between labs.
        "    ansible_ssh_common_args: "
        + _yaml_scalar("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"),
        f"    ansible_become_method: {_yaml_scalar('sudo')}",
        f"    ansible_python_interpreter: {_yaml_scalar('/usr/bin/python3')}",
        "  hosts:",
    ]
    for host, address in zip(hosts, addresses, strict=True):
        lines.append(f"    {host.name}:")
        lines.append(f"      ansible_host: {_yaml_scalar(str(address))}")
    groups: dict[str, list[str]] = {}
    for host in hosts:
        for group in host.groups:
            groups.setdefault(group, []).append(host.name)
    if groups:
        lines.append("  children:")
        for group in sorted(groups):
            lines.append(f"    {group}:")
            lines.append("      hosts:")
            lines.extend(f"        {name}: {{}}" for name in groups[group])
    return "\n".join(lines) + "\n"


def render_instance_config(
    hosts: Sequence[HostSpec],
    addresses: Sequence[ipaddress.IPv4Address],
    key_path: str,
) -> str:
    """Molecule's instance config: a list of {instance, address, user, port, identity_file}."""
    lines = ["---", "# Written by lab/labctl.py for Molecule's delegated driver."]
    for host, address in zip(hosts, addresses, strict=True):
        lines.extend(
            [
                f"- instance: {_yaml_scalar(host.name)}",
                f"  address: {_yaml_scalar(str(address))}",
                f"  user: {_yaml_scalar(LAB_USER)}",
                "  port: 22",
                f"  identity_file: {_yaml_scalar(key_path)}",
            ]
        )
    if not hosts:
        lines.append("[]")
    return "\n".join(lines) + "\n"


def render_network_unit(address: ipaddress.IPv4Address, index: int) -> str:
    """systemd-networkd unit that masks the image's DHCP default for host0."""
    net = lab_network(index)
    return (
        "# Written by lab/labctl.py: static address on the lab bridge.\n"
        "[Match]\n"
        "Virtualization=container\n"
        "Name=host0\n"
        "\n"
        "[Link]\n"
        "RequiredForOnline=routable\n"
        "\n"
        "[Network]\n"
        f"Address={address}/{net.prefixlen}\n"
        f"Gateway={gateway_address(index)}\n"
        "LinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n"
    )


def render_etc_hosts(
    hosts: Sequence[HostSpec],
    addresses: Sequence[ipaddress.IPv4Address],
) -> str:
    """/etc/hosts of a lab host: loopback plus every host of the lab by name."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    lines.extend(f"{address}\t{host.name}" for host, address in zip(hosts, addresses, strict=True))
    return "\n".join(lines) + "\n"


def usable_resolv_conf(candidates: Sequence[tuple[str, str]]) -> str:
    """The first resolv.conf (path, text) whose nameservers a lab host can reach.

    A host has its own network namespace, so a loopback resolver of the build machine
    (systemd-resolved's 127.0.0.53, a local dnsmasq) is not reachable from it.
    """
    for _path, text in candidates:
        servers = [
            words[1]
            for words in (line.split() for line in text.splitlines())
            if len(words) > 1 and words[0] == "nameserver"
        ]
        if servers and not any(
            ipaddress.ip_address(server.split("%")[0]).is_loopback for server in servers
        ):
            return text
    tried = ", ".join(path for path, _unused in candidates)
    raise LabError(
        f"no resolver the lab hosts can reach in {tried}: every nameserver is missing or "
        "on loopback; point the build machine at a non-loopback DNS server"
    )
