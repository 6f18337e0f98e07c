"""Table-driven firewall checks for the scenarios' verifiers (role base, issue 15).

PORTS says, independently of the role's base_firewall_rules, which groups may reach
each port: the intent the rules must implement. For every lab host that opens a port
(by its groups) and every other lab host, the check connects from the other host and
expects "open" exactly when that host is an allowed source (and, for a host whose
outbound traffic is limited, the destination is one it may reach), else a closed port:
dropped (the connect times out) or stopped on the way out (EPERM). Refused does not
count as closed: it would mean the firewall let the packet through. So that "open" is
provable for every port, a throwaway listener takes each port nothing listens on.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import testinfra
import testinfra.utils.ansible_runner
import yaml

ANY = "any"

# (port, hosts of this group open it, groups allowed in). No group: the admin
# networks only (the controller), which are never a lab host.
PORTS: tuple[tuple[int, str, frozenset[str] | str], ...] = (
    (22, "all", frozenset()),
    (9100, "all", frozenset({"monitoring"})),
    (8443, "lb", ANY),
    (8080, "lb", ANY),
    (8404, "lb", frozenset({"monitoring"})),
    (8081, "registry", frozenset({"lb"})),
    (8082, "registry", frozenset({"lb"})),
    (9181, "registry", frozenset({"monitoring"})),
    (9182, "registry", frozenset({"monitoring"})),
    (5432, "db", frozenset({"registry", "db"})),
    (9187, "db", frozenset({"monitoring"})),
    (8008, "db", frozenset({"db", "monitoring"})),
    (2379, "db", frozenset({"db", "dcs", "monitoring"})),
    (2380, "db", frozenset({"db", "dcs"})),
    (6379, "cache", frozenset({"registry", "cache"})),
    (26379, "cache", frozenset({"registry", "cache"})),
    (9121, "cache", frozenset({"monitoring"})),
    (9090, "monitoring", frozenset({"monitoring"})),
    (9093, "monitoring", frozenset({"monitoring"})),
    (9094, "monitoring", frozenset({"monitoring"})),
    (9091, "monitoring", frozenset({"bench", "monitoring"})),
    (9095, "monitoring", frozenset({"monitoring"})),
    (3000, "monitoring", frozenset()),
)

# Hosts whose groups are all in here may only connect out to these (port, group) pairs
# among the lab hosts (DNS, NTP and APT go elsewhere).
EGRESS_LIMITED = frozenset({"registry"})
EGRESS: frozenset[tuple[int, str]] = frozenset({(5432, "db"), (6379, "cache"), (26379, "cache")})

CLOSED = ("filtered", "blocked")
STACK_GROUPS = frozenset({"registry", "db", "dcs", "cache", "lb", "monitoring", "bench", "backup"})


@dataclass(frozen=True)
class Case:
    source: str
    target: str
    port: int
    expected: str  # "open" or "closed"

    @property
    def id(self) -> str:
        return f"{self.source}->{self.target}:{self.port}"


def _reaches(source_groups: set[str], port: int, target_groups: set[str]) -> bool:
    if not source_groups or not source_groups <= EGRESS_LIMITED:
        return True
    return any(port == p and group in target_groups for p, group in EGRESS)


def cases(
    host_groups: dict[str, set[str]],
    extra: Iterable[tuple[int, str, frozenset[str] | str]] = (),
) -> list[Case]:
    """Every (source, target, port) of the lab with what it must be."""
    found = []
    for port, opened_by, allowed in (*PORTS, *extra):
        targets = [h for h, g in host_groups.items() if opened_by == "all" or opened_by in g]
        for target in sorted(targets):
            for source in sorted(host_groups):
                if source == target:
                    continue  # loopback is always allowed
                groups = host_groups[source]
                admitted = allowed == ANY or bool(groups & set(allowed))
                reached = _reaches(groups, port, host_groups[target])
                expected = "open" if admitted and reached else "closed"
                found.append(Case(source, target, port, expected))
    return found


# Connects to each (address, port) at once; prints {"address:port": outcome}.
_PROBE = r"""
import concurrent.futures, errno, json, socket, sys
timeout, targets = float(sys.argv[1]), json.loads(sys.argv[2])
def one(target):
    address, port = target
    sock = socket.socket()
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except (socket.timeout, TimeoutError):
        return "filtered"
    except PermissionError:
        return "blocked"
    except OSError as error:
        return "error " + errno.errorcode.get(error.errno, str(error.errno))
    finally:
        sock.close()
with concurrent.futures.ThreadPoolExecutor(64) as pool:
    outcomes = list(pool.map(one, targets))
print(json.dumps({f"{a}:{p}": o for (a, p), o in zip(targets, outcomes)}))
"""


def probe(host, targets: list[tuple[str, int]], timeout: float = 3.0) -> dict[str, str]:
    """From a lab host: outcome of a TCP connect to each (address, port)."""
    out = host.check_output(
        "python3 -c %s %s %s", _PROBE, str(timeout), json.dumps([list(t) for t in targets])
    )
    return json.loads(out)


def probe_here(address: str, port: int, timeout: float = 3.0) -> str:
    """The same from the controller (an admin network)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "filtered"


def _listening(host) -> set[int]:
    """TCP ports the host listens on at an address other hosts can reach."""
    ports = set()
    for line in host.check_output("ss -Htln").splitlines():
        local = line.split()[3]
        address, _sep, port = local.rpartition(":")
        if address.startswith("127.") or address in ("[::1]", "::1"):
            continue
        ports.add(int(port))
    return ports


# Listens (the kernel completes the handshakes) on every port given, until stopped.
_LISTEN = r"""
import socket, sys, time
socks = []
for port in sys.argv[1:]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", int(port)))
    sock.listen(64)
    socks.append(sock)
while True:
    time.sleep(3600)
"""


@contextmanager
def listeners(hosts: dict[str, object], wanted: dict[str, set[int]]) -> Iterator[None]:
    """A throwaway listener on each wanted port nothing listens on; removed afterwards."""
    started = []
    try:
        for name, ports in wanted.items():
            host = hosts[name]
            missing = sorted(ports - _listening(host))
            if not missing:
                continue
            with host.sudo():
                host.check_output(
                    # --collect: stopped by a signal it ends "failed"; without it the
                    # unit would stay loaded and the next run on this lab could not start it.
                    "systemd-run --unit llmops-fwtest-listen --collect --property=Type=exec "
                    "python3 -c %s " + " ".join(str(p) for p in missing),
                    _LISTEN,
                )
            started.append(host)
            host.check_output(
                "for i in $(seq 50); do ss -Htln | grep -q ':%s ' && exit 0; sleep 0.1; done;"
                " exit 1",
                str(missing[-1]),
            )
        yield
    finally:
        for host in started:
            with host.sudo():
                host.run("systemctl stop llmops-fwtest-listen")


def run_table(
    hosts: dict[str, object],
    host_groups: dict[str, set[str]],
    addresses: dict[str, str],
    extra: Iterable[tuple[int, str, frozenset[str] | str]] = (),
) -> tuple[list[Case], dict[str, str]]:
    """Probes every case (one run per source host, all at once); (cases, outcomes by id)."""
    table = cases(host_groups, extra)
    wanted: dict[str, set[int]] = {}
    for case in table:
        wanted.setdefault(case.target, set()).add(case.port)
    outcomes: dict[str, str] = {}
    with listeners(hosts, wanted):
        for source in sorted({c.source for c in table}):
            mine = [c for c in table if c.source == source]
            seen = probe(hosts[source], [(addresses[c.target], c.port) for c in mine])
            for case in mine:
                outcomes[case.id] = seen[f"{addresses[case.target]}:{case.port}"]
    return table, outcomes


def mismatches(table: list[Case], outcomes: dict[str, str]) -> list[str]:
    """The cases whose outcome is not what the table says, as readable lines."""
    wrong = []
    for case in table:
        got = outcomes[case.id]
        ok = got == "open" if case.expected == "open" else got in CLOSED
        if not ok:
            wrong.append(f"{case.id}: expected {case.expected}, got {got}")
    return wrong


def scenario_lab() -> tuple[dict[str, object], dict[str, set[str]], dict[str, str]]:
    """The scenario's hosts (testinfra, sudo-capable), their groups and their addresses."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    runner = testinfra.utils.ansible_runner.AnsibleRunner(inventory)
    names = runner.get_hosts("all")
    hosts = {n: testinfra.get_host(f"ansible://{n}", ansible_inventory=inventory) for n in names}
    # The stack's groups only: the runner's group_names carries Molecule's own too.
    groups = {n: set(runner.get_variables(n)["group_names"]) & STACK_GROUPS for n in names}
    with open(os.environ["MOLECULE_INSTANCE_CONFIG"], encoding="utf-8") as handle:
        addresses = {item["instance"]: item["address"] for item in yaml.safe_load(handle)}
    return hosts, groups, addresses
