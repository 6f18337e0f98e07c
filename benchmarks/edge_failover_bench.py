"""Fault drills at the edge under load (issue 13): the Redis master's host and the lb
host holding the virtual address are killed (labctl kill: SIGKILL, no shutdown) while
a bounded load generator sends requests through the virtual address.

    sudo .venv/bin/python benchmarks/edge_failover_bench.py --lab ha_edge \\
        --inventory <molecule ephemeral dir>/inventory [--out FILE]

Runs against a converged lab of molecule/ha_edge (`molecule converge -s ha_edge`;
Molecule's side_effect runs this same script). For each fault it records:
- Redis: seconds from the kill until a surviving replica is promoted (its INFO says
  master; Sentinel's port is open to cache and registry hosts only), failed
  reads / writes / other requests of the load, seconds until the booted host is a
  replica of the new master again, and the changed tasks of a deploy.yml re-run after
  the failover (must be none) with the master it leaves;
- load balancer: seconds from the kill until the other host reports MASTER (its
  keepalived notify metric, read from its node_exporter), seconds until the address
  answers again, the failed requests and why, and whether the address moved back
  within --watch seconds after the old holder booted (non-preemptive: it must not).
Prints the figures and saves them (default benchmarks/results/edge_failover.json).
Only lab host addresses (and the lab's own virtual address) are ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from drill_load import Load, failure_counts, inventory_cafile

REPO = Path(__file__).resolve().parents[1]
LABCTL = REPO / "lab" / "labctl.py"


# --- the lab -----------------------------------------------------------------------


def inventory(path: str) -> dict:
    tool = REPO / ".venv" / "bin" / "ansible-inventory"
    command = str(tool) if tool.exists() else "ansible-inventory"
    out = subprocess.run(  # noqa: S603 - our own inventory
        [command, "-i", path, "--list"], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


def group(inv: dict, name: str) -> list[str]:
    return sorted(inv.get(name, {}).get("hosts", []))


def labctl(action: str, lab: str, host: str) -> None:
    argv = [sys.executable, str(LABCTL), action, "--lab", lab, "--host", host]
    if os.geteuid() != 0:
        argv.insert(0, "sudo")
    # One more try for boot, as molecule/shared/create.yml does for up: on a busy
    # machine an nspawn host now and then fails to boot (the lab, not the drill).
    for attempt in range(2 if action == "boot" else 1):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if proc.returncode == 0:
            return
        if attempt == 0 and action == "boot":
            time.sleep(5)
    raise SystemExit(f"labctl {action} {host} failed: {proc.stderr[-1500:]}")


# --- Redis and Sentinel (RESP over a socket: no client library needed) -------------

# TLS to Redis (the redis role's redis_tls, on unless the inventory turns it off): the
# internal CA beside the inventory verifies each cache host's certificate and address.
REDIS_TLS: dict[str, ssl.SSLContext] = {}


def _read_reply(f) -> object:
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b":"):
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = f.read(size + 2)[:-2]
        return data.decode()
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(f) for _unused in range(size)]
    raise RuntimeError(f"unexpected reply {line[:40]!r}")


def redis_call(address: str, port: int, auth: list[str], *command: str, timeout=1.0) -> object:
    def encode(args) -> bytes:
        out = f"*{len(args)}\r\n".encode()
        for arg in args:
            data = str(arg).encode()
            out += b"$%d\r\n%s\r\n" % (len(data), data)
        return out

    with socket.create_connection((address, port), timeout=timeout) as raw:
        context = REDIS_TLS.get("context")
        sock = context.wrap_socket(raw, server_hostname=address) if context else raw
        with sock:
            f = sock.makefile("rb")
            sock.sendall(encode(["AUTH", *auth]) + encode(list(command)))
            _read_reply(f)
            return _read_reply(f)


def replication(address: str, secrets: dict) -> dict:
    try:
        text = redis_call(address, 6379, ["exporter", secrets["exporter"]], "INFO", "replication")
    except (OSError, RuntimeError):
        return {}
    return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)


# --- keepalived through node_exporter's textfile metrics ----------------------------


def vrrp(address: str) -> dict:
    try:
        with urllib.request.urlopen(f"http://{address}:9100/metrics", timeout=1) as response:
            text = response.read().decode()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        if line.startswith("keepalived_vrrp_") and 'instance_name="registry"' in line:
            name = line.split("{", 1)[0]
            values[name] = float(line.rsplit(" ", 1)[1])
    return values


def answers(vip: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{vip}:8080/lb-health", timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def registry_redis_status(address: str, port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/health", timeout=3) as response:
            return json.loads(response.read())["components"]["redis"]["status"]
    except (OSError, ValueError, KeyError):
        return "unreachable"


def wait_for(predicate, timeout: float, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


# --- the drills ---------------------------------------------------------------------


def masters(addresses: list[str], secrets: dict) -> list[str]:
    """The addresses whose Redis says role:master (INFO replication, exporter user;
    Sentinel's port is open to cache and registry hosts only, not to this machine)."""
    return [a for a in addresses if replication(a, secrets).get("role") == "master"]


def kill_under_load(args, secrets: dict, work: Path, name: str, victim: str) -> tuple[Load, float]:
    """Load through the VIP, settle, then kill the victim's host: (the load, the kill's
    monotonic time)."""
    load = Load(
        args.vip,
        work,
        name,
        secrets["api_key"],
        args.max_load_seconds,
        cafile=inventory_cafile(args.inventory),
    )
    time.sleep(args.settle)
    killed = time.monotonic()
    labctl("kill", args.lab, victim)
    return load, killed


def redis_drill(args, inv, secrets, addresses, work: Path) -> dict:
    caches = group(inv, "cache")
    by_address = {addresses[h]: h for h in caches}
    found = masters([addresses[h] for h in caches], secrets)
    if len(found) != 1:
        raise SystemExit(f"expected one Redis master, found {found}")
    master = found[0]
    victim = by_address[master]
    survivors = [addresses[h] for h in caches if h != victim]
    load, killed = kill_under_load(args, secrets, work, "redis", victim)

    def promoted() -> str | None:
        now = masters(survivors, secrets)
        return now[0] if len(now) == 1 else None

    new_master = wait_for(promoted, 60)
    failover_seconds = round(time.monotonic() - killed, 2) if new_master else None

    def replicas_follow() -> bool:
        return all(
            replication(a, secrets).get("master_host") == new_master
            and replication(a, secrets).get("master_link_status") == "up"
            for a in survivors
            if a != new_master
        )

    followed = wait_for(replicas_follow, 30, 0.2)
    follow_seconds = round(time.monotonic() - killed, 2) if followed else None
    time.sleep(args.after)
    result = failure_counts(load.finish())
    # What each registry instance says of its cache now (a Sentinel-aware registry
    # follows the new master: "up"; one pinned to the first cache host: "down").
    registry_redis = {
        f"{h}:{port}": registry_redis_status(addresses[h], port)
        for h in group(inv, "registry")
        for port in (8081, 8082)
    }

    labctl("boot", args.lab, victim)
    booted = time.monotonic()

    def rejoined() -> bool:
        info = replication(master, secrets)
        return (
            info.get("role") == "slave"
            and info.get("master_host") == new_master
            and info.get("master_link_status") == "up"
        )

    rejoined_ok = bool(wait_for(rejoined, 120, 0.5))
    rejoin_seconds = round(time.monotonic() - booted, 1) if rejoined_ok else None
    roles = {h: replication(addresses[h], secrets).get("role") for h in caches}

    rerun = deploy_rerun(args, work)
    return {
        "killed_host": victim,
        "old_master": master,
        "new_master": new_master,
        "new_master_host": by_address.get(new_master),
        "redis_failover_seconds": failover_seconds,
        "other_replica_follows_seconds": follow_seconds,
        "load": result,
        "registry_redis_status_after_failover": registry_redis,
        "rejoined_as_replica": rejoined_ok,
        "rejoin_seconds_after_boot": rejoin_seconds,
        "roles_after_rejoin": roles,
        "deploy_rerun": rerun,
        "masters_after_rerun": masters([addresses[h] for h in caches], secrets),
    }


def deploy_rerun(args, work: Path) -> dict:
    tool = REPO / ".venv" / "bin" / "ansible-playbook"
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(REPO / "collections")
    started = time.monotonic()
    proc = subprocess.run(  # noqa: S603 - our own playbook on our own lab
        [
            str(tool) if tool.exists() else "ansible-playbook",
            "-i",
            args.inventory,
            str(REPO / "playbooks" / "deploy.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
        timeout=900,
    )
    (work / "deploy_rerun.json").write_text(proc.stdout)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return {"rc": proc.returncode, "changed": ["(no JSON report)"], "seconds": None}
    changed = [
        f"{host}: {task['task']['name']}"
        for play in report.get("plays", [])
        for task in play["tasks"]
        for host, result in task["hosts"].items()
        if result.get("changed")
    ]
    return {
        "rc": proc.returncode,
        "changed": changed,
        "seconds": round(time.monotonic() - started, 1),
    }


def lb_drill(args, inv, secrets, addresses, work: Path) -> dict:
    lbs = group(inv, "lb")
    holders = [h for h in lbs if vrrp(addresses[h]).get("keepalived_vrrp_master") == 1]
    if len(holders) != 1:
        raise SystemExit(f"expected one lb host holding the address, found {holders}")
    victim = holders[0]
    others = [h for h in lbs if h != victim]
    load, killed = kill_under_load(args, secrets, work, "lb", victim)
    taken = wait_for(
        lambda: next(
            (h for h in others if vrrp(addresses[h]).get("keepalived_vrrp_master") == 1), None
        ),
        30,
        0.05,
    )
    move_seconds = round(time.monotonic() - killed, 2) if taken else None
    serving = wait_for(lambda: answers(args.vip), 30, 0.05)
    serving_seconds = round(time.monotonic() - killed, 2) if serving else None
    time.sleep(args.after)
    result = failure_counts(load.finish())
    before = vrrp(addresses[taken]) if taken else {}

    labctl("boot", args.lab, victim)
    booted = wait_for(lambda: vrrp(addresses[victim]).get("keepalived_vrrp_state") == 1, 120, 0.5)
    # Non-preemptive: the address stays where it is while the old holder is back.
    samples = []
    end = time.monotonic() + args.watch
    while time.monotonic() < end:
        samples.append(
            {h: vrrp(addresses[h]).get("keepalived_vrrp_master") for h in lbs}
            | {"vip": answers(args.vip)}
        )
        time.sleep(0.5)
    after = vrrp(addresses[taken]) if taken else {}
    return {
        "killed_host": victim,
        "new_holder": taken,
        "vip_move_seconds": move_seconds,
        "vip_serving_seconds": serving_seconds,
        "load": result,
        "old_holder_back_as_backup": bool(booted),
        "watch_seconds": args.watch,
        "flapped_back": any(s.get(victim) == 1 for s in samples),
        "holder_master_transitions_before_boot": before.get(
            "keepalived_vrrp_master_transitions_total"
        ),
        "holder_master_transitions_after_watch": after.get(
            "keepalived_vrrp_master_transitions_total"
        ),
        "vip_answered_during_watch": all(s["vip"] for s in samples),
        "two_holders_seen": any(sum(1 for h in lbs if s.get(h) == 1) > 1 for s in samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab", default="ha_edge")
    parser.add_argument("--inventory", required=True, help="Molecule's inventory of the lab")
    parser.add_argument("--vip", help="virtual address (default: .200 of lb1's /24)")
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "edge_failover.json")
    )
    parser.add_argument("--settle", type=float, default=4.0, help="load seconds before a fault")
    parser.add_argument("--after", type=float, default=5.0, help="load seconds after recovery")
    parser.add_argument("--watch", type=float, default=10.0, help="seconds to watch for flapping")
    parser.add_argument("--max-load-seconds", type=float, default=120.0)
    parser.add_argument("--only", choices=["redis", "lb"], help="run one drill")
    args = parser.parse_args()

    inv = inventory(args.inventory)
    hostvars = inv["_meta"]["hostvars"]
    addresses = {h: v["ansible_host"] for h, v in hostvars.items()}
    some = hostvars[group(inv, "cache")[0]]
    secrets = {
        "exporter": some["vault_redis_exporter_password"],
        "api_key": some["vault_registry_api_keys"][0]["key"],
    }
    if some.get("redis_tls", True) not in (False, "false", "False", "no"):
        REDIS_TLS["context"] = ssl.create_default_context(cafile=inventory_cafile(args.inventory))
    if not args.vip:
        args.vip = ".".join([*addresses[group(inv, "lb")[0]].split(".")[:3], "200"])
    Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
    # Load results, the API key and the re-run's report: a private folder, never results/.
    work = Path(tempfile.mkdtemp(prefix="edge_failover."))

    figures: dict = {"lab": args.lab, "vip": args.vip, "started": time.time()}
    if args.only in (None, "redis"):
        figures["redis_master_kill"] = redis_drill(args, inv, secrets, addresses, work)
        Path(args.out).write_text(json.dumps(figures, indent=2))
    if args.only in (None, "lb"):
        figures["lb_holder_kill"] = lb_drill(args, inv, secrets, addresses, work)
    Path(args.out).write_text(json.dumps(figures, indent=2))

    r, lb = figures.get("redis_master_kill"), figures.get("lb_holder_kill")
    if r:
        load = r["load"]
        print(
            f"Redis master kill ({r['killed_host']}): failover {r['redis_failover_seconds']} s "
            f"-> {r['new_master_host']}; {load['requests']} requests, failed reads "
            f"{load['failed_reads']}, writes {load['failed_writes']}, "
            f"other {load['failed_other']}; "
            f"rejoined as replica {r['rejoined_as_replica']} ({r['rejoin_seconds_after_boot']} s "
            f"after boot); deploy re-run changed {len(r['deploy_rerun']['changed'])} "
            f"(rc {r['deploy_rerun']['rc']})"
        )
    if lb:
        load = lb["load"]
        print(
            f"lb holder kill ({lb['killed_host']}): VIP moved to {lb['new_holder']} in "
            f"{lb['vip_move_seconds']} s, answering after {lb['vip_serving_seconds']} s; "
            f"{load['requests']} requests, failed {load['failed']} (reads {load['failed_reads']}, "
            f"writes {load['failed_writes']}); flapped back {lb['flapped_back']}"
        )
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
