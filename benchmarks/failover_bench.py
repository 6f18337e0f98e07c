#!/usr/bin/env python3
"""Failover drills of the Patroni cluster under bounded load, with figures.

For each fault (kill the primary's host, planned switchover, stop one etcd member)
two bounded load generators run from the controller:
  - through the load balancer (lb:8080): reads of one cached schema and registrations
    of new ones, every acknowledged registration logged;
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
import http.client
import json
import os
import subprocess
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = "ha_bench_writes"


@dataclass
class Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    reads_ok: int = 0
    reads_failed: list[float] = field(default_factory=list)
    writes_ok: list[tuple[float, str]] = field(default_factory=list)
    writes_failed: list[float] = field(default_factory=list)
    lb_writes_ok: list[tuple[float, str]] = field(default_factory=list)
    lb_writes_failed: list[float] = field(default_factory=list)

    def add(self, kind: str, ok: bool, at: float, token: str = "") -> None:
        with self.lock:
            if kind == "read":
                if ok:
                    self.reads_ok += 1
                else:
                    self.reads_failed.append(at)
            elif kind == "lbwrite":
                if ok:
                    self.lb_writes_ok.append((at, token))
                else:
                    self.lb_writes_failed.append(at)
            elif ok:
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
        log.add("write", ok, at, token)
        time.sleep(interval)


def http_call(conn_box: list, lb: str, key: str, method: str, path: str, body: dict | None):  # noqa: PLR0917 - thread targets take their arguments by position
    if conn_box[0] is None:
        conn_box[0] = http.client.HTTPConnection(lb, 8080, timeout=10)
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn_box[0].request(method, path, body=data, headers=headers)
        response = conn_box[0].getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        conn_box[0].close()
        conn_box[0] = None
        raise


def schema_body(subject: str) -> dict:
    return {
        "subject": subject,
        "schema_type": "JSON",
        "schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
    }


def lb_worker(lb: str, key: str, schema_id: str, log: Log, stop: threading.Event, n: int) -> None:  # noqa: PLR0917 - thread targets take their arguments by position
    conn_box: list = [None]
    count = 0
    while not stop.is_set():
        count += 1
        at = time.time()
        if count % 4 == 0:
            subject = f"hadrill.w{n}.{uuid.uuid4().hex[:12]}"
            try:
                status, payload = http_call(
                    conn_box, lb, key, "POST", "/api/v1/schemas", schema_body(subject)
                )
                ok = status in (200, 201)
                token = json.loads(payload).get("id", "") if ok else ""
            except (OSError, http.client.HTTPException, ValueError):
                ok, token = False, ""
            log.add("lbwrite", ok, at, str(token))
        else:
            try:
                status, _ = http_call(
                    conn_box, lb, key, "GET", f"/api/v1/schemas/{schema_id}", None
                )
                ok = status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            log.add("read", ok, at)
        time.sleep(0.1)


def patroni_role(address: str) -> str:
    for path, role in (("/primary", "primary"), ("/replica", "replica")):
        try:
            with urllib.request.urlopen(f"http://{address}:8008{path}", timeout=2) as response:
                if response.status == 200:
                    return role
        except OSError:
            continue
    return "down"


def wait_for(what: str, check, timeout: float) -> float:
    started = time.time()
    while time.time() - started < timeout:
        if check():
            return time.time() - started
        time.sleep(0.5)
    raise SystemExit(f"failover_bench: timed out after {timeout:.0f} s waiting for {what}")


def unavailability(writes_ok: list, writes_failed: list, fault_at: float) -> float:
    """Seconds from the first failed write at/after the fault to the next acknowledged one."""
    failed = sorted(t for t in writes_failed if t >= fault_at - 1)
    if not failed:
        return 0.0
    later_ok = [t for t, _ in writes_ok if t > failed[0]]
    end = min(later_ok) if later_ok else max(failed)
    return round(end - failed[0], 2)


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


def load_instances(path: Path) -> dict:
    import yaml  # the controller venv has it (ansible)  # noqa: PLC0415 - yaml only when reading the instance file

    return {
        i["instance"]: {"address": i["address"], "user": i["user"], "key": i["identity_file"]}
        for i in yaml.safe_load(path.read_text())
    }


def run_fault(args, inv: dict, name: str, key: str, schema_id: str) -> dict:
    db_hosts = args.db_hosts.split(",")
    addresses = [inv[h]["address"] for h in db_hosts]
    dsn = conninfo(addresses, args.db_password)
    log, stop = Log(), threading.Event()
    threads = [
        threading.Thread(target=db_writer, args=(dsn, log, stop, 0.05))
        for _ in range(args.db_writers)
    ]
    if args.lb:
        threads += [
            threading.Thread(target=lb_worker, args=(args.lb, key, schema_id, log, stop, n))
            for n in range(args.workers)
        ]
    roles = {h: patroni_role(a) for h, a in zip(db_hosts, addresses)}  # noqa: B905 - same-length lists by construction
    primary = next(h for h, r in roles.items() if r == "primary")
    extra: dict = {"primary_before": primary}
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
            extra["new_primary_after_s"] = round(
                wait_for(
                    "a new primary",
                    lambda: any(patroni_role(inv[h]["address"]) == "primary" for h in others),
                    90,
                ),
                2,
            )
            extra["primary_after"] = next(
                h for h in others if patroni_role(inv[h]["address"]) == "primary"
            )
        elif name == "switchover":
            done = subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
                [  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
                    "ansible-playbook",
                    "-i",
                    args.inventory,
                    str(ROOT / "playbooks/db_switchover.yml"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            extra["playbook_rc"] = done.returncode
            if done.returncode != 0:
                extra["playbook_tail"] = done.stdout[-1500:]
            extra["primary_after"] = next(
                (h for h in db_hosts if patroni_role(inv[h]["address"]) == "primary"), "none"
            )
        elif name == "etcd_member":
            victim = next(h for h in db_hosts if h != primary)
            extra["etcd_stopped_on"] = victim
            ssh(inv, victim, "sudo systemctl stop etcd")
            time.sleep(args.hold)
            ssh(inv, victim, "sudo systemctl start etcd")
            extra["primary_after"] = next(
                (h for h in db_hosts if patroni_role(inv[h]["address"]) == "primary"), "none"
            )
        time.sleep(args.hold)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if name == "kill_primary":
        subprocess.run(  # noqa: S603 - argument list, no shell: lab tools on lab hosts
            ["python3", str(ROOT / "lab/labctl.py"), "boot", "--lab", args.lab, "--host", primary],  # noqa: S607 - psql/ssh/ansible-playbook/python3 from PATH, as an operator runs them
            check=True,
            capture_output=True,
        )
        extra["rejoined_as_replica_after_s"] = round(
            wait_for(
                f"{primary} to rejoin as a replica",
                lambda: patroni_role(inv[primary]["address"]) == "replica",
                240,
            ),
            2,
        )
    # Every acknowledged direct write must be on the current primary.
    tokens = [t for _, t in log.writes_ok]
    present = set(psql(dsn, f"SELECT token FROM {TABLE}", timeout=30).stdout.split())  # noqa: S608 - tokens and ids this script generated, never input
    lost_db = [t for t in tokens if t not in present]
    # Every schema the registry acknowledged must still be readable by its id.
    lost_lb = 0
    box: list = [None]
    for _, schema in log.lb_writes_ok:
        try:
            status, _ = http_call(box, args.lb, key, "GET", f"/api/v1/schemas/{schema}", None)
        except (OSError, http.client.HTTPException):
            status = 0
        lost_lb += status == 404
    return {
        "fault": name,
        "db_writes_acknowledged": len(tokens),
        "db_writes_failed": len(log.writes_failed),
        "db_lost_acknowledged_writes": len(lost_db),
        "write_unavailability_s": unavailability(log.writes_ok, log.writes_failed, fault_at),
        "lb_reads_ok": log.reads_ok,
        "lb_reads_failed": len(log.reads_failed),
        "lb_writes_acknowledged": len(log.lb_writes_ok),
        "lb_writes_failed": len(log.lb_writes_failed),
        "lb_lost_acknowledged_writes": lost_lb,
        "lb_write_unavailability_s": unavailability(
            log.lb_writes_ok, log.lb_writes_failed, fault_at
        ),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/failover_bench.json"))
    args = parser.parse_args()
    if not args.db_password:
        parser.error("--db-password (or HA_DB_PASSWORD) is required")
    inv = load_instances(Path(args.instances))
    addresses = [inv[h]["address"] for h in args.db_hosts.split(",")]
    setup = psql(
        conninfo(addresses, args.db_password),
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, token text NOT NULL, "
        "at timestamptz NOT NULL DEFAULT now())",
    )
    if setup.returncode != 0:
        raise SystemExit(f"failover_bench: cannot reach the primary: {setup.stderr.strip()}")
    schema_id = ""
    if args.lb:
        status, payload = http_call(
            [None],
            args.lb,
            args.api_key,
            "POST",
            "/api/v1/schemas",
            schema_body(f"hadrill.seed.{uuid.uuid4().hex[:12]}"),
        )
        if status not in (200, 201):
            raise SystemExit(
                f"failover_bench: cannot register the seed schema: HTTP {status} {payload[:200]!r}"
            )
        schema_id = json.loads(payload)["id"]
    results = []
    for name in args.faults.split(","):
        result = run_fault(args, inv, name, args.api_key, schema_id)
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
