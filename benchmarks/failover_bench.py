"""Failover drills of the Patroni cluster under bounded load, with figures.

For each fault (kill the primary's host, planned switchover, stop one etcd member)
two bounded load generators run from the controller:
  - through the load balancer (https, lb:8443): molecule/release/loadgen.py (benchmarks/
    drill_load.py), reads of one cached schema and registrations of new ones, every
    acknowledged registration logged;
  - straight to PostgreSQL with a libpq multi-host connection string
    (target_session_attrs=read-write), one INSERT per request, every acknowledged id
    logged (psql, so no driver is needed on the controller).
After the fault the script checks every acknowledged write on the current primary and
prints, then saves in benchmarks/results/, per fault: seconds of write unavailability,
failed reads, failed writes and lost acknowledged writes. Only lab host addresses are
targets. Needs root (labctl kill/boot) for the kill fault.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from drill_load import READ, WRITE, Load, inventory_cafile

ROOT = Path(__file__).resolve().parents[1]
TABLE = "ha_bench_writes"


@dataclass
class Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    writes_ok: list[tuple[float, str]] = field(default_factory=list)
    writes_failed: list[float] = field(default_factory=list)

    def add(self, ok: bool, at: float, token: str = "") -> None:
        with self.lock:
            if ok:
                self.writes_ok.append((at, token))
            else:
                self.writes_failed.append(at)


def conninfo(hosts: list[str], password: str, attrs: str = "read-write") -> str:
    return (
        f"host={','.join(hosts)} port=5432 dbname=schema_registry user=schema_registry "
        f"password={password} target_session_attrs={attrs} connect_timeout=2"
    )


def psql(dsn: str, sql: str, timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
        ["psql", "--no-psqlrc", "-qtAX", "-v", "ON_ERROR_STOP=1", dsn, "-c", sql],  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def db_writer(dsn: str, log: Log, stop: threading.Event, interval: float) -> None:
    while not stop.is_set():
        token = uuid.uuid4().hex
        at = time.time()
        try:
            done = psql(dsn, f"INSERT INTO {TABLE} (token) VALUES ('{token}') RETURNING id")  # noqa: S608 - tokens and ids this script generated, never input
            ok = done.returncode == 0 and done.stdout.strip().isdigit()
        except subprocess.TimeoutExpired:
            ok = False
        log.add(ok, at, token)
        time.sleep(interval)


def lb_status(lb: str, key: str, cafile: str, path: str, body: dict | None = None) -> int:
    """HTTP status of one API call through the load balancer (0: no answer); a body
    makes it a POST."""
    request = urllib.request.Request(
        f"https://{lb}:8443{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=cafile)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310 - a lab host only
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def schema_status(lb: str, key: str, schema_id: str, cafile: str) -> int:
    """HTTP status of GET /api/v1/schemas/<id> through the load balancer (0: no answer)."""
    return lb_status(lb, key, cafile, f"/api/v1/schemas/{schema_id}")


def patroni_role(address: str, cafile: str) -> str:
    """primary, replica or down, from Patroni's REST API (HTTPS, checked against the CA)."""
    context = ssl.create_default_context(cafile=cafile)
    for path, role in (("/primary", "primary"), ("/replica", "replica")):
        try:
            url = f"https://{address}:8008{path}"
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return role
        except OSError:
            continue
    return "down"


def primary_of(inv: dict, hosts: list[str], cafile: str) -> str:
    """The first of hosts whose Patroni says primary, or "none"."""
    return next((h for h in hosts if patroni_role(inv[h]["address"], cafile) == "primary"), "none")


def wait_for(what: str, check, timeout: float) -> float:
    started = time.time()
    while time.time() - started < timeout:
        if check():
            return time.time() - started
        time.sleep(0.5)
    raise SystemExit(f"failover_bench: timed out after {timeout:.0f} s waiting for {what}")


def unavailability(writes_ok: list, writes_failed: list, fault_at: float) -> float:
    """Seconds of the longest stretch without an acknowledged write around failures at or
    after the fault: for each failed attempt, from the last acknowledged attempt that
    started before it to the first that started after it (start times). A write that
    slipped through just before the host died does not end the outage early."""
    failed = sorted(t for t in writes_failed if t >= fault_at - 1)
    if not failed:
        return 0.0
    ok = sorted(t for t, _unused in writes_ok)
    longest = 0.0
    for at in failed:
        before = [t for t in ok if t < at]
        after = [t for t in ok if t > at]
        start = max(before) if before else at
        end = min(after) if after else max(failed)
        longest = max(longest, end - start)
    return round(longest, 2)


def ssh(inv: dict, host: str, command: str) -> subprocess.CompletedProcess:
    h = inv[host]
    return subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
        [  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
            "ssh",
            "-i",
            h["key"],
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            f"{h['user']}@{h['address']}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def etcdctl(inv: dict, host: str, *args: str) -> subprocess.CompletedProcess:
    """etcdctl against the etcd member on host, with that host's certificate."""
    return ssh(
        inv,
        host,
        f"sudo ETCDCTL_API=3 etcdctl --endpoints https://{inv[host]['address']}:2379 "
        "--cacert /etc/llmops/tls/ca.crt --cert /etc/llmops/tls/server.crt "
        "--key /etc/llmops/tls/server.key " + " ".join(args),
    )


def etcd_members(inv: dict, hosts: list[str]) -> tuple[dict[str, int], str]:
    """Each host's etcd member ID, and the host whose member leads ("unknown" when
    none says so)."""
    ids, leader = {}, "unknown"
    for host in hosts:
        try:
            status = json.loads(etcdctl(inv, host, "endpoint status -w json").stdout)[0]["Status"]
        except (ValueError, LookupError, TypeError):
            continue
        ids[host] = status["header"]["member_id"]
        if status.get("leader") == ids[host]:
            leader = host
    return ids, leader


def etcd_leader_onto(inv: dict, hosts: list[str], target: str) -> str:
    """Hand etcd's leadership to the member on target (etcdctl move-leader, asked of
    the current leader); the leader afterwards. The primary's host leading etcd too is
    the slowest failover: its death costs an etcd re-election and a lease extension
    more (roles/postgresql/README.md, Failover timing)."""
    ids, leader = etcd_members(inv, hosts)
    if leader not in (target, "unknown") and target in ids:
        etcdctl(inv, leader, f"move-leader {ids[target]:x}")
        time.sleep(2)  # the new leader's first heartbeats
    return etcd_members(inv, hosts)[1]


# Log lines that date the steps of a failover: etcd's own leader election, the lock
# seen gone, the check of the former leader's REST API, the race and the promotion.
_TIMELINE_WORDS = (
    "lost leader|elected leader|became leader|Lock owner|Request failed|Got response|"
    "acquir|promot|healthiest|following a different|synchronous standby|"
    "redo done|selected new timeline|restored log file|archive recovery complete|"
    "ready to accept|Selected new etcd"
)


def survivor_log(inv: dict, hosts: list[str], fault_at: float) -> dict[str, list[str]]:
    """journalctl lines of patroni and etcd on each host from 2 s before the fault to 40 s
    after it, filtered to the steps of a failover (at most 150 lines per host)."""
    logs = {}
    for host in hosts:
        done = ssh(
            inv,
            host,
            f"sudo journalctl -u patroni -u etcd -o short-precise --no-pager "
            f"--since @{int(fault_at) - 2} --until @{int(fault_at) + 40} "
            f"| grep -iE '{_TIMELINE_WORDS}' | head -n 150",
        )
        logs[host] = done.stdout.splitlines() or [f"(no log: rc {done.returncode})"]
    return logs


def write_timeline(writes_ok: list, writes_failed: list, fault_at: float) -> dict:
    """Seconds after the fault (attempt start times) of the first and the last failed
    write, of the first acknowledged write after the first failure and of the first one
    after the last failure (the end of the outage)."""
    failed = sorted(t for t in writes_failed if t >= fault_at - 1)
    if not failed:
        return {}
    ok = [t for t, _unused in writes_ok]

    def first_ok(after: float) -> float | None:
        later = [t for t in ok if t > after]
        return round(min(later) - fault_at, 2) if later else None

    return {
        "first_failed_s": round(failed[0] - fault_at, 2),
        "last_failed_s": round(failed[-1] - fault_at, 2),
        "first_ok_after_first_failed_s": first_ok(failed[0]),
        "first_ok_after_last_failed_s": first_ok(failed[-1]),
    }


def load_instances(path: Path) -> dict:
    import yaml  # the controller venv has it (ansible)  # noqa: PLC0415 - yaml only when reading the instance file

    return {
        i["instance"]: {"address": i["address"], "user": i["user"], "key": i["identity_file"]}
        for i in yaml.safe_load(path.read_text())
    }


def run_fault(args, inv: dict, name: str, key: str, work: Path) -> dict:
    db_hosts = args.db_hosts.split(",")
    addresses = [inv[h]["address"] for h in db_hosts]
    dsn = conninfo(addresses, args.db_password)
    log, stop = Log(), threading.Event()
    threads = [
        threading.Thread(target=db_writer, args=(dsn, log, stop, 0.05))
        for _unused in range(args.db_writers)
    ]
    roles = {h: patroni_role(a, args.cafile) for h, a in zip(db_hosts, addresses)}  # noqa: B905 - same-length lists by construction
    primary = next(h for h, r in roles.items() if r == "primary")
    extra: dict = {
        "primary_before": primary,
        "etcd_leader_before": etcd_leader_onto(inv, db_hosts, primary)
        if name == "kill_primary" and args.etcd_leader_on_primary
        else etcd_members(inv, db_hosts)[1],
    }
    # About the request rate the old in-process workers made (10 per second each).
    load = None
    if args.lb:
        load = Load(
            args.lb,
            work,
            name,
            key,
            900,
            rate=10.0 * args.workers,
            workers=args.workers,
            cafile=inventory_cafile(args.inventory[0]),
        )
    for thread in threads:
        thread.start()
    time.sleep(args.settle)
    fault_at = time.time()
    try:
        if name == "kill_primary":
            subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
                [  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
                    "python3",
                    str(ROOT / "lab/labctl.py"),
                    "kill",
                    "--lab",
                    args.lab,
                    "--host",
                    primary,
                ],
                check=True,
                capture_output=True,
            )
            others = [h for h in db_hosts if h != primary]
            # Keyword arguments are evaluated in order: when labctl's kill returned (the
            # new primary is timed from then), then the wait.
            extra.update(
                kill_returned_after_s=round(time.time() - fault_at, 2),
                new_primary_after_s=round(
                    wait_for(
                        "a new primary",
                        lambda: primary_of(inv, others, args.cafile) != "none",
                        90,
                    ),
                    2,
                ),
                primary_after=primary_of(inv, others, args.cafile),
            )
        elif name == "switchover":
            done = subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
                [  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
                    "ansible-playbook",
                    *[arg for source in args.inventory for arg in ("-i", source)],
                    str(ROOT / "playbooks/db_switchover.yml"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            extra["playbook_rc"] = done.returncode
            if done.returncode != 0:
                extra["playbook_tail"] = done.stdout[-1500:]
            extra["primary_after"] = primary_of(inv, db_hosts, args.cafile)
        elif name == "etcd_member":
            victim = next(h for h in db_hosts if h != primary)
            extra["etcd_stopped_on"] = victim
            ssh(inv, victim, "sudo systemctl stop etcd")
            time.sleep(args.hold)
            ssh(inv, victim, "sudo systemctl start etcd")
            extra["primary_after"] = primary_of(inv, db_hosts, args.cafile)
        time.sleep(args.hold)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        summary = load.finish() if load else None
    if name == "kill_primary":
        # Where the seconds went: the survivors' Patroni and etcd log lines around the
        # fault (the lab hosts share the controller's clock), read before the old one boots.
        extra["survivor_log"] = survivor_log(inv, [h for h in db_hosts if h != primary], fault_at)
        subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
            ["python3", str(ROOT / "lab/labctl.py"), "boot", "--lab", args.lab, "--host", primary],  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
            check=True,
            capture_output=True,
        )
        extra["rejoined_as_replica_after_s"] = round(
            wait_for(
                f"{primary} to rejoin as a replica",
                lambda: patroni_role(inv[primary]["address"], args.cafile) == "replica",
                240,
            ),
            2,
        )
    # Every acknowledged direct write must be on the current primary.
    tokens = [t for _unused, t in log.writes_ok]
    present = set(psql(dsn, f"SELECT token FROM {TABLE}", timeout=30).stdout.split())  # noqa: S608 - tokens and ids this script generated, never input
    lost_db = [t for t in tokens if t not in present]
    # Every schema the registry acknowledged must still be readable by its id.
    reads = summary["by_request"].get(READ, {}) if summary else {}
    writes = summary["by_request"].get(WRITE, {}) if summary else {}
    lb_writes_ok = [tuple(entry) for entry in summary["written"]] if summary else []
    lb_writes_failed = writes.get("failed_at", [])
    lost_lb = sum(
        schema_status(args.lb, key, schema, inventory_cafile(args.inventory[0])) == 404
        for _unused, schema in lb_writes_ok
    )
    return {
        "fault": name,
        "db_writes_acknowledged": len(tokens),
        "db_writes_failed": len(log.writes_failed),
        "db_lost_acknowledged_writes": len(lost_db),
        "write_unavailability_s": unavailability(log.writes_ok, log.writes_failed, fault_at),
        "lb_reads_ok": reads.get("ok", 0),
        "lb_reads_failed": reads.get("failed", 0),
        "lb_writes_acknowledged": len(lb_writes_ok),
        "lb_writes_failed": len(lb_writes_failed),
        "lb_lost_acknowledged_writes": lost_lb,
        "lb_write_unavailability_s": unavailability(lb_writes_ok, lb_writes_failed, fault_at),
        "db_write_timeline": write_timeline(log.writes_ok, log.writes_failed, fault_at),
        "lb_write_timeline": write_timeline(lb_writes_ok, lb_writes_failed, fault_at),
        "fault_at": round(fault_at, 3),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab", required=True)
    parser.add_argument(
        "--inventory",
        action="append",
        required=True,
        help="ansible inventory of the lab (for db_switchover.yml); repeat to add sources",
    )
    parser.add_argument("--db-writers", type=int, default=3, help="parallel direct writers")
    parser.add_argument("--instances", required=True, help="labctl instance_config.yml")
    parser.add_argument("--db-hosts", required=True, help="comma separated inventory names")
    parser.add_argument(
        "--db-password",
        default=os.environ.get("HA_DB_PASSWORD", ""),
        help="password of schema_registry (default: $HA_DB_PASSWORD)",
    )
    parser.add_argument("--lb", default="", help="load balancer address (empty: no HTTP load)")
    parser.add_argument(
        "--api-key", default=os.environ.get("HA_API_KEY", ""), help="default: $HA_API_KEY"
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--faults", default="kill_primary,switchover,etcd_member")
    parser.add_argument(
        "--etcd-leader-on-primary",
        action="store_true",
        help="before killing the primary's host, move etcd's leadership onto it (the slowest case)",
    )
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/failover_bench.json"))
    args = parser.parse_args()
    if not args.db_password:
        parser.error("--db-password (or HA_DB_PASSWORD) is required")
    inv = load_instances(Path(args.instances))
    args.cafile = inventory_cafile(args.inventory[0])  # Patroni's REST API is HTTPS
    addresses = [inv[h]["address"] for h in args.db_hosts.split(",")]
    setup = psql(
        conninfo(addresses, args.db_password),
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, token text NOT NULL, "
        "at timestamptz NOT NULL DEFAULT now())",
    )
    if setup.returncode != 0:
        raise SystemExit(f"failover_bench: cannot reach the primary: {setup.stderr.strip()}")
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.faults.split(","):
            result = run_fault(args, inv, name, args.api_key, Path(work))
            print(json.dumps(result))
            results.append(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"at": time.time(), "lab": args.lab, "results": results}, indent=2) + "\n"
    )
    print(f"saved {out}")


if __name__ == "__main__":
    os.environ.setdefault("PGCONNECT_TIMEOUT", "2")
    main()
