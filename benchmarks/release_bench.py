"""Release and rollback timings under load, on a deployed lab (targets: rollback <= 5 s
per host, 0 failed requests).

    .venv/bin/python benchmarks/release_bench.py --inventory INVENTORY \\
        --to 2.0.0 --back 1.0.0 [--rounds 1]

Runs molecule/release/loadgen.py through the load balancer, then per round
`playbooks/release.yml -e version=TO` and `playbooks/rollback.yml -e version=BACK`, with
Ansible's json callback. Reports the wall time of each playbook, the time each host
spent being switched back (first to last task of the rollback play on that host:
drain, switch both instances, /ready, enable, current) with the slowest tasks of that
play, the failed requests during each phase and the machine's load average (a shared
2-core machine: the figures mean little without it). Prints the figures and saves them
in benchmarks/results/.
The inventory is one the deploy or the release Molecule scenario wrote (the load
balancer is its first `lb` host); only those lab hosts are targets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from drill_load import Load, inventory_cafile

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results"
SWITCH_PLAY = "Switch the registry hosts back"


def ansible_bin(name: str) -> str:
    local = ROOT / ".venv/bin" / name
    return str(local) if local.exists() else name


def inventory_facts(inventory: str) -> tuple[str, str]:
    """Address of the first lb host and the first API key, read with ansible-inventory."""
    out = subprocess.run(  # noqa: S603 - fixed argv, our own tools
        [ansible_bin("ansible-inventory"), "-i", inventory, "--list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = json.loads(out)
    hostvars = data["_meta"]["hostvars"]
    lb = data["lb"]["hosts"][0]
    registry = data["registry"]["hosts"][0]
    # ansible-inventory prints variables untemplated: take the first list of keys, so
    # "{{ vault_registry_api_keys }}" wiring is passed over for the list it points at.
    candidates = (
        hostvars[registry].get(name)
        for name in ("schema_registry_api_keys", "vault_registry_api_keys")
    )
    keys = next((value for value in candidates if isinstance(value, list) and value), None)
    if not keys:
        raise SystemExit("release_bench: no schema_registry_api_keys in the inventory")
    return hostvars[lb].get("ansible_host", lb), keys[0]["key"]


def run_playbook(inventory: str, playbook: str, version: str) -> dict:
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
    )
    start, load_before = time.time(), load_average()
    proc = subprocess.run(  # noqa: S603 - fixed argv, our own playbooks
        [
            ansible_bin("ansible-playbook"),
            "-i",
            inventory,
            str(ROOT / "playbooks" / playbook),
            "-e",
            f"version={version}",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=ROOT,
    )
    end = time.time()
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = {"plays": []}
    return {
        "rc": proc.returncode,
        "load_before": load_before,
        "load_after": load_average(),
        "start": start,
        "end": end,
        "report": report,
        "stderr": proc.stderr[-2000:],
    }


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def timed_tasks(report: dict, play_name: str) -> Iterator[tuple[dict, float, float]]:
    """(task, start, end) of every task of the named play that has both times."""
    for play in report.get("plays", []):
        if play["play"]["name"] != play_name:
            continue
        for task in play["tasks"]:
            duration = task["task"].get("duration", {})
            if duration.get("start") and duration.get("end"):
                yield task, _ts(duration["start"]), _ts(duration["end"])


def per_host_seconds(report: dict, play_name: str) -> dict[str, float]:
    """First task start to last task end per host in the named play."""
    spans: dict[str, list[float]] = {}
    for task, start, end in timed_tasks(report, play_name):
        for host in task["hosts"]:
            span = spans.setdefault(host, [float("inf"), 0.0])
            span[0] = min(span[0], start)
            span[1] = max(span[1], end)
    return {host: round(end - start, 2) for host, (start, end) in spans.items()}


def slowest_tasks(report: dict, play_name: str, top: int = 8) -> dict[str, list]:
    """Per host, the tasks of the named play that took longest (summed over loops)."""
    totals: dict[str, dict[str, float]] = {}
    for task, start, end in timed_tasks(report, play_name):
        for host in task["hosts"]:
            per_task = totals.setdefault(host, {})
            name = task["task"]["name"]
            per_task[name] = per_task.get(name, 0.0) + end - start
    return {
        host: [
            [name, round(sec, 2)] for name, sec in sorted(tasks.items(), key=lambda i: -i[1])[:top]
        ]
        for host, tasks in totals.items()
    }


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def failures_between(summary: dict, start: float, end: float) -> int:
    return sum(1 for f in summary["failures"] if start <= f["at"] <= end)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--inventory", required=True)
    parser.add_argument("--to", required=True, help="version to release")
    parser.add_argument("--back", required=True, help="version to roll back to")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rate", type=float, default=40.0)
    args = parser.parse_args()

    lb_address, api_key = inventory_facts(args.inventory)
    with tempfile.TemporaryDirectory() as work:
        load = Load(
            lb_address,
            Path(work),
            "release",
            api_key,
            3600,
            rate=args.rate,
            cafile=inventory_cafile(args.inventory),
        )
        time.sleep(3)
        rounds = []
        for _attempt in range(args.rounds):
            release = run_playbook(args.inventory, "release.yml", args.to)
            rollback = run_playbook(args.inventory, "rollback.yml", args.back)
            rounds.append((release, rollback))
        summary = load.finish()

    results = {
        "when": datetime.now(UTC).isoformat(),
        "to": args.to,
        "back": args.back,
        "load_rate_target": args.rate,
        "load_rate_achieved": round(summary["requests"] / max(summary["seconds"], 0.1), 1),
        "requests": summary["requests"],
        "cpu_count": os.cpu_count(),
        "rounds": [
            {
                "release_rc": rel["rc"],
                "release_seconds": round(rel["end"] - rel["start"], 1),
                "release_failed_requests": failures_between(summary, rel["start"], rel["end"]),
                "release_load_average": [rel["load_before"], rel["load_after"]],
                "rollback_rc": rb["rc"],
                "rollback_seconds": round(rb["end"] - rb["start"], 1),
                "rollback_seconds_per_host": per_host_seconds(rb["report"], SWITCH_PLAY),
                "rollback_slowest_tasks_per_host": slowest_tasks(rb["report"], SWITCH_PLAY),
                "rollback_failed_requests": failures_between(summary, rb["start"], rb["end"]),
                "rollback_load_average": [rb["load_before"], rb["load_after"]],
                "errors": [run["stderr"] for run in (rel, rb) if run["rc"] != 0],
            }
            for rel, rb in rounds
        ],
        "failed_requests_total": summary["failed"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"release_bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    target.write_text(json.dumps(results, indent=2) + "\n")
    for number, item in enumerate(results["rounds"], 1):
        print(
            f"round {number}: release {item['release_seconds']} s "
            f"(rc {item['release_rc']}, {item['release_failed_requests']} failed requests), "
            f"rollback {item['rollback_seconds']} s "
            f"(rc {item['rollback_rc']}, {item['rollback_failed_requests']} failed requests); "
            f"load average 1/5/15 min at the rollback's end {item['rollback_load_average'][1]}"
        )
        for host, seconds in sorted(item["rollback_seconds_per_host"].items()):
            print(f"  rollback on {host}: {seconds} s (target <= 5 s)")
            for name, task_seconds in item["rollback_slowest_tasks_per_host"].get(host, [])[:5]:
                print(f"    {task_seconds:6.2f} s  {name}")
        for error in item["errors"]:
            print(f"  a playbook failed: {error[-500:]}")
    print(
        f"requests through the load balancer: {results['requests']}, "
        f"failed: {results['failed_requests_total']} (target 0)"
    )
    print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
