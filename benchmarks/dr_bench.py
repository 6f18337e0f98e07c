"""RPO and RTO when every database host loses its disk and only the pgBackRest
repository is left.

Grows the registry database to --fill-mb (reinit_bench's table) and takes a full
backup. Then direct writers insert rows, each acknowledged or not, timed on the
controller. After --write-seconds every database host loses its data at once:
Patroni is masked (it must not start PostgreSQL again), Patroni and PostgreSQL are
killed with SIGKILL (no shutdown checkpoint, no last archiving) and the data folder is
removed. restore.yml restores the latest point (the end of the archived WAL) while the
controller tries a schema write through the load balancer every 0.5 s.

RPO: seconds between the newest acknowledged write that the restore brought back and
the newest acknowledged write before the loss (0 when none was lost), and how many
acknowledged writes were lost. What is lost is the WAL segment being written, not yet
archived: archive_timeout (60 s) bounds it, so the write window is longer than that.
RTO: seconds from the start of restore.yml to the first write the registry accepts
again, and to the end of restore.yml (replicas re-created included). The etcd members
on the database hosts are kept: this drill loses PostgreSQL's disks, not the machines.
Prints the figures and saves them in benchmarks/results/. Only lab host addresses are
targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

from drill_load import inventory_cafile
from failover_bench import (
    ROOT,
    TABLE,
    Log,
    conninfo,
    db_writer,
    lb_status,
    load_instances,
    psql,
    ssh,
)
from reinit_bench import fill, full_backup

DATA = "/var/lib/postgresql/15/main"


def registry_write(lb: str, key: str, cafile: str) -> int:
    """HTTP status of one schema write through the load balancer (0: no answer)."""
    body = {
        "subject": f"dr_bench.s{uuid.uuid4().hex[:12]}",
        "schema_type": "JSON",
        "schema": {"type": "object", "properties": {"prompt": {"type": "string"}}},
    }
    return lb_status(lb, key, cafile, "/api/v1/schemas", body)


def lose_disks(inv: dict, hosts: list[str]) -> None:
    """Every database host at once: PostgreSQL gone without a shutdown, data folder removed."""
    loss = (
        "sudo sh -c 'systemctl mask --runtime --quiet patroni.service; "
        "systemctl kill --signal=KILL patroni.service; pkill -KILL -u postgres; "
        f"systemctl stop patroni.service; rm -rf {DATA}; "
        "systemctl unmask --runtime --quiet patroni.service'"
    )
    threads = [threading.Thread(target=ssh, args=(inv, h, loss)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--instances", required=True, help="labctl instance_config.yml")
    parser.add_argument(
        "--inventory", action="append", required=True, help="ansible inventory; repeat to add"
    )
    parser.add_argument("--db-hosts", required=True, help="comma separated inventory names")
    parser.add_argument("--backup-host", default="backup1")
    parser.add_argument("--lb", required=True, help="load balancer address")
    parser.add_argument("--fill-mb", type=int, default=1024, help="size the database grows to")
    # Longer than archive_timeout (60 s), so the window holds at least one forced WAL switch.
    parser.add_argument("--write-seconds", type=float, default=120.0)
    parser.add_argument("--writers", type=int, default=2, help="parallel direct writers")
    parser.add_argument(
        "--db-password",
        default=os.environ.get("HA_DB_PASSWORD", ""),
        help="password of schema_registry (default: $HA_DB_PASSWORD)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("HA_API_KEY", ""), help="default: $HA_API_KEY"
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/dr_bench.json"))
    args = parser.parse_args()
    if not args.db_password or not args.api_key:
        parser.error("--db-password and --api-key (or HA_DB_PASSWORD, HA_API_KEY) are required")
    return args


def write_then_lose(args, inv: dict, dsn: str) -> tuple[list[tuple[float, str]], float]:
    """Acknowledged writes (time, token) until every database host lost its data."""
    setup = psql(
        dsn,
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, token text NOT NULL, "
        "at timestamptz NOT NULL DEFAULT now())",
    )
    if setup.returncode != 0:
        raise SystemExit(f"dr_bench: cannot create {TABLE}: {setup.stderr.strip()}")
    log, stop = Log(), threading.Event()
    writers = [
        threading.Thread(target=db_writer, args=(dsn, log, stop, 0.05), daemon=True)
        for _unused in range(args.writers)
    ]
    for writer in writers:
        writer.start()
    time.sleep(args.write_seconds)
    lost_at = time.time()
    lose_disks(inv, args.db_hosts.split(","))
    stop.set()
    for writer in writers:
        writer.join(timeout=30)
    return [(at, token) for at, token in log.writes_ok if at < lost_at], lost_at


def restore_timed(args, cafile: str) -> tuple[float | None, float]:
    """restore.yml (latest); seconds to the first accepted write and to its end."""
    command = ["ansible-playbook"]
    for inventory in args.inventory:
        command += ["-i", inventory]
    command += ["playbooks/restore.yml", "-e", "confirm_restore=yes"]
    restore_log = Path(args.out).with_suffix(".restore.log")
    restore_log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    writable_s = None
    with restore_log.open("w") as sink:
        restore = subprocess.Popen(  # noqa: S603 - our own playbook on our own lab
            command, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, text=True
        )
        # Until the registry takes a write again and restore.yml has ended (or failed).
        while time.time() - started < 1800:
            if writable_s is None and registry_write(args.lb, args.api_key, cafile) in (200, 201):
                writable_s = round(time.time() - started, 2)
            ended = restore.poll()
            if (ended is not None and writable_s is not None) or ended not in (None, 0):
                break
            time.sleep(0.5)
        restore.wait()
    if restore.returncode != 0:
        tail = restore_log.read_text()[-4000:]
        raise SystemExit(f"dr_bench: restore.yml failed (rc {restore.returncode}):\n{tail}")
    return writable_s, round(time.time() - started, 2)


def main() -> None:
    args = arguments()
    inv = load_instances(Path(args.instances))
    dsn = conninfo([inv[h]["address"] for h in args.db_hosts.split(",")], args.db_password)

    started = time.time()
    fill(dsn, args.fill_mb)
    fill_s = round(time.time() - started, 2)
    size = psql(dsn, "SELECT pg_database_size(current_database())").stdout.strip()
    backup = full_backup(inv, args.backup_host)
    acknowledged, lost_at = write_then_lose(args, inv, dsn)
    writable_s, restore_s = restore_timed(args, inventory_cafile(args.inventory[0]))

    present = set(psql(dsn, f"SELECT token FROM {TABLE}", timeout=60).stdout.split())  # noqa: S608 - our own table name
    kept = [at for at, token in acknowledged if token in present]
    lost = [at for at, token in acknowledged if token not in present]
    newest = max((at for at, _unused in acknowledged), default=lost_at)
    result = {
        "at": time.time(),
        "database_bytes": int(size) if size.isdigit() else size,
        "fill_seconds": fill_s,
        "full_backup": backup,
        "writes_acknowledged": len(acknowledged),
        "writes_lost": len(lost),
        # Nothing of the run came back: the loss spans at least the whole write window.
        "rpo_seconds": round(newest - max(kept or [min(lost, default=newest)]), 2) if lost else 0.0,
        "rpo_is_lower_bound": bool(lost) and not kept,
        "rto_writable_seconds": writable_s,
        "restore_playbook_seconds": restore_s,
    }
    print(json.dumps(result))
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
