"""Re-initialising a Patroni replica: from the pgBackRest repository vs basebackup.

Grows the registry database to --fill-mb (a table of its own, made once), takes a full
pgBackRest backup on the backup host (timed, with the size it stored), then for each
method re-initialises one replica (Patroni REST POST /reinitialize, what `patronictl
reinit` does, asked on the member with its host certificate) with Patroni's
create_replica_methods set to that method alone, and times it until the member
streams again with no lag. Patroni's own log on the member says which method made the
replica; its rows are counted against the primary's. The DCS configuration is put
back as it was afterwards. Prints the figures and saves them in benchmarks/results/.
Only lab host addresses are targets.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from drill_load import inventory_cafile
from failover_bench import ROOT, conninfo, load_instances, patroni_role, psql, ssh, wait_for

TABLE = "reinit_bench_fill"
ROW_BYTES = 1000  # 30 md5 strings of 32 characters plus the tuple's overhead, about


# Role pki's files on the db hosts: a change (PATCH /config, POST /reinitialize) needs a
# client certificate from the CA, so it is asked on the member itself with its own.
HOST_TLS = (
    "--cacert /etc/llmops/tls/ca.crt --cert /etc/llmops/tls/server.crt"
    " --key /etc/llmops/tls/server.key"
)


@dataclass(frozen=True)
class Api:
    """Patroni's REST API of the lab's members (HTTPS): reads from here, checked against
    the CA; changes on the member, over SSH, with its host certificate."""

    inv: dict
    cafile: str

    def __call__(
        self, host: str, path: str, method: str = "GET", body: dict | None = None
    ) -> tuple[int, str]:
        url = f"https://{self.inv[host]['address']}:8008{path}"
        if method != "GET":
            data = shlex.quote(json.dumps(body or {}))
            done = ssh(
                self.inv,
                host,
                f"sudo curl -sS -w '\\n%{{http_code}}' {HOST_TLS} -X {method} "
                f"-H 'Content-Type: application/json' --data {data} {url}",
            )
            text, _sep, status = done.stdout.rpartition("\n")
            return (int(status) if status.isdigit() else 0), text or done.stderr
        context = ssl.create_default_context(cafile=self.cafile)
        try:
            with urllib.request.urlopen(url, timeout=30, context=context) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


def member(api: Api, host: str, name: str) -> dict:
    members = json.loads(api(host, "/cluster")[1])["members"]
    return next((m for m in members if m["name"] == name), {})


def fill(dsn: str, megabytes: int) -> int:
    rows = megabytes * 1024 * 1024 // ROW_BYTES
    done = psql(
        dsn,
        f"CREATE TABLE IF NOT EXISTS {TABLE} (n int PRIMARY KEY, payload text NOT NULL); "  # noqa: S608 - our own table name and row count
        f"INSERT INTO {TABLE} SELECT g, repeat(md5(g::text), 30) "
        f"FROM generate_series(1, {rows}) g ON CONFLICT DO NOTHING",
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"reinit_bench: cannot fill the database: {done.stderr.strip()}")
    return rows


def member_sql(inv: dict, host: str, sql: str) -> str:
    return ssh(
        inv, host, f"sudo -u postgres psql -qtAX -d schema_registry -c {sql!r}"
    ).stdout.strip()


def full_backup(inv: dict, backup_host: str) -> dict:
    started = time.time()
    run = ssh(inv, backup_host, "sudo systemctl start llmops-pgbackrest@full.service")
    seconds = round(time.time() - started, 2)
    if run.returncode != 0:
        raise SystemExit(f"reinit_bench: the full backup failed: {run.stderr.strip()}")
    info = json.loads(
        ssh(
            inv, backup_host, "sudo -u pgbackrest pgbackrest --stanza=registry --output=json info"
        ).stdout
    )
    newest = info[0]["backup"][-1]
    return {
        "seconds": seconds,
        "type": newest["type"],
        "database_bytes": newest["info"]["size"],
        "stored_bytes": newest["info"]["repository"]["delta"],
    }


def reinit(api: Api, api_host: str, name: str, methods: list[str]) -> dict:
    """Re-initialise `name` with create_replica_methods = methods; seconds until it streams."""
    api(api_host, "/config", "PATCH", {"postgresql": {"create_replica_methods": methods}})
    time.sleep(5)  # every member loads the DCS change within loop_wait (2 s)
    before = json.loads(api(name, "/patroni")[1]).get("postmaster_start_time")
    since = int(time.time()) - 1
    started = time.time()
    status, text = api(name, "/reinitialize", "POST", {"force": True})
    if status != 200:
        raise SystemExit(f"reinit_bench: reinitialize of {name} refused ({status}): {text}")

    def streaming() -> bool:
        state = json.loads(api(name, "/patroni")[1])
        entry = member(api, name, name)
        return (
            state.get("postmaster_start_time") != before
            and state.get("state") == "running"
            and entry.get("role") in ("replica", "sync_standby")
            and entry.get("lag") == 0
        )

    wait_for(f"{name} to stream again", streaming, 900)
    seconds = round(time.time() - started, 2)
    journal = f"sudo journalctl -u patroni --since @{since} --no-pager -o cat"
    log = ssh(api.inv, name, journal).stdout
    used = [m for m in ("pgbackrest", "basebackup") if f"replica has been created using {m}" in log]
    return {
        "methods": methods,
        "created_using": used[0] if used else "unknown",
        "seconds_to_streaming": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--instances", required=True, help="labctl instance_config.yml")
    parser.add_argument("--db-hosts", required=True, help="comma separated inventory names")
    parser.add_argument(
        "--inventory", required=True, help="ansible inventory of the lab (its .pki/ca.crt)"
    )
    parser.add_argument("--backup-host", default="backup1")
    parser.add_argument("--member", default="", help="replica to re-initialise (default: one)")
    parser.add_argument("--fill-mb", type=int, default=200, help="size the database grows to")
    parser.add_argument(
        "--db-password",
        default=os.environ.get("HA_DB_PASSWORD", ""),
        help="password of schema_registry (default: $HA_DB_PASSWORD)",
    )
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/reinit_bench.json"))
    args = parser.parse_args()
    if not args.db_password:
        parser.error("--db-password (or HA_DB_PASSWORD) is required")
    inv = load_instances(Path(args.instances))
    hosts = args.db_hosts.split(",")
    api = Api(inv, inventory_cafile(args.inventory))
    roles = {h: patroni_role(inv[h]["address"], api.cafile) for h in hosts}
    primary = next(h for h, r in roles.items() if r == "primary")
    name = args.member or next(h for h, r in roles.items() if r == "replica")
    dsn = conninfo([inv[h]["address"] for h in hosts], args.db_password)
    started = time.time()
    rows = fill(dsn, args.fill_mb)
    filled_s = round(time.time() - started, 2)
    size = member_sql(inv, primary, "SELECT pg_database_size(current_database())")
    backup = full_backup(inv, args.backup_host)
    original = json.loads(api(primary, "/config")[1])
    runs = []
    try:
        for methods in (["pgbackrest"], ["basebackup"]):
            run = reinit(api, primary, name, methods)
            run["rows"] = member_sql(inv, name, f"SELECT count(*) FROM {TABLE}")  # noqa: S608 - our own table name
            print(json.dumps(run))
            runs.append(run)
    finally:
        api(
            primary,
            "/config",
            "PATCH",
            {
                "postgresql": {
                    "create_replica_methods": original["postgresql"].get("create_replica_methods")
                }
            },
        )
    result = {
        "at": time.time(),
        "primary": primary,
        "member": name,
        "database_bytes": int(size) if size.isdigit() else size,
        "fill_rows": rows,
        "fill_seconds": filled_s,
        "full_backup": backup,
        "reinit": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "reinit"}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
