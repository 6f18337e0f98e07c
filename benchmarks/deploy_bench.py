#!/usr/bin/env python3
"""First converge and no-op re-run of the multi-host deploy (issue 4; target: the
no-op re-run takes under a quarter of the first converge).

    sudo .venv/bin/python benchmarks/deploy_bench.py [--lab deploybench]

Boots a lab of its own (`labctl.py up --lab deploybench`: registry1, registry2,
data1 in db+cache, lb1, the hosts of molecule/multi_host), writes a throw-away
inventory beside it (the lab's inventory.yml, inventories/local's group_vars and random
secrets from playbooks/lab_secrets.yml), then runs `playbooks/deploy.yml` twice and
times both runs. The second run must change nothing: its changed count is recorded,
and a non-zero one fails the script (exit 1) after the figures are saved. The lab is
always taken down at the end, and only that lab: other labs are never touched.

Prints the figures and saves them in benchmarks/results/deploy_bench.json, with the
full output of both runs in deploy_bench-first.log and deploy_bench-noop.log. The
release artifact is built before the clock starts (as `make deploy` does), so the
first converge measures the deploy alone. Packages fetched by an earlier run stay in
the lab's apt cache (keyed by lab and host name); the JSON says whether it was warm.
Run as root (labctl boots systemd-nspawn hosts). Takes about 7 minutes.

The no-op re-run is CPU-bound (one Python module run per task and host, on the
controller and on the hosts): on this shared 2-core machine it moves with the load
average, which is saved before and after. deploy.yml's converge play runs with the free
strategy, where profile_tasks charges each task with the time until the next task
starts on any host: the slowest-task lists there are a rough guide only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LABCTL = ROOT / "lab/labctl.py"
RESULTS = ROOT / "benchmarks/results"
LOCAL_GROUP_VARS = ROOT / "inventories/local/group_vars/all/main.yml"
APT_CACHE = Path("/var/lib/llmops-lab/apt-cache")
# The hosts of molecule/multi_host: two registry hosts, one data host, one load balancer.
LAB_HOSTS = ("registry1:registry", "registry2:registry", "data1:db,cache", "lb1:lb")
TARGET_RATIO = 0.25
RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
)
TASK_LINE = re.compile(r"^TASK \[(?P<name>.*)\]")
CHANGED_LINE = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")
# ansible.posix.profile_tasks' closing list: "role : task ------ 12.34s".
SLOW_TASK_LINE = re.compile(r"^(?P<task>.+?) -+ (?P<seconds>\d+\.\d+)s$")
SLOWEST = 10


def tool(name: str) -> str:
    """The controller tool from .venv when it is there, else from PATH."""
    local = ROOT / ".venv/bin" / name
    return str(local) if local.exists() else name


def ansible_env() -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    # Per-task times, to name where each run spends its time.
    env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = str(SLOWEST)
    env["PATH"] = f"{ROOT / '.venv/bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    # Fixed argv of our own tools, never a shell.
    return subprocess.run(argv, check=False, text=True, **kwargs)  # noqa: S603


def labctl(*args: str) -> list[str]:
    return [sys.executable, str(LABCTL), *args]


def registry_version() -> str:
    return str(yaml.safe_load(LOCAL_GROUP_VARS.read_text())["schema_registry_version"])


def build_artifact(version: str) -> None:
    """The release artifact deploy.yml ships, built before the clock starts."""
    if (ROOT / f"dist/schema-registry-{version}.tar.gz").exists():
        return
    result = run(
        [
            "python3",
            str(ROOT / "service/build_artifact.py"),
            "--version",
            version,
            "--out",
            str(ROOT / "dist"),
        ],
    )
    if result.returncode != 0:
        raise SystemExit(f"deploy_bench: building the {version} artifact failed")


def lab_up(lab: str) -> Path:
    """Boot the lab; returns the path of its inventory."""
    result = run(
        labctl("up", "--lab", lab, *(f"--host={spec}" for spec in LAB_HOSTS)),
        capture_output=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"deploy_bench: labctl up failed:\n{result.stderr}")
    return Path(result.stdout.strip().splitlines()[-1])


def lab_down(lab: str) -> None:
    result = run(labctl("down", "--lab", lab), capture_output=True)
    if result.returncode != 0:
        print(f"deploy_bench: labctl down --lab {lab} failed:\n{result.stderr}", file=sys.stderr)


def write_inventory(lab_inventory: Path, folder: Path) -> Path:
    """The lab's hosts with the local inventory's settings and fresh random secrets."""
    hosts = folder / "hosts.yml"
    shutil.copyfile(lab_inventory, hosts)
    group_vars = folder / "group_vars/all"
    group_vars.mkdir(parents=True)
    shutil.copyfile(LOCAL_GROUP_VARS, group_vars / "main.yml")
    result = run(
        [
            tool("ansible-playbook"),
            "-i",
            str(hosts),
            str(ROOT / "playbooks/lab_secrets.yml"),
            "-e",
            f"lab_secrets_file={group_vars / 'lab_secrets.yml'}",
        ],
        capture_output=True,
        env=ansible_env(),
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"deploy_bench: playbooks/lab_secrets.yml failed:\n{result.stdout}")
    return hosts


def parse_run(output: str) -> dict[str, object]:
    """Per-host recap and the tasks that reported a change, from the default callback."""
    recap: dict[str, dict[str, int]] = {}
    changed_tasks: list[str] = []
    slowest: list[tuple[str, float]] = []
    task = ""
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        if in_recap and (match := RECAP_LINE.match(line)):
            counts = {k: int(v) for k, v in match.groupdict().items() if k != "host"}
            recap[match["host"]] = counts
        elif in_recap and (match := SLOW_TASK_LINE.match(line)):
            slowest.append((match["task"], float(match["seconds"])))
        elif match := TASK_LINE.match(line):
            task = match["name"]
        elif match := CHANGED_LINE.match(line):
            changed_tasks.append(f"{match['host']}: {task}")
    return {
        "changed": sum(counts["changed"] for counts in recap.values()),
        "failed": sum(counts["failed"] + counts["unreachable"] for counts in recap.values()),
        "recap": recap,
        "changed_tasks": changed_tasks,
        "slowest_tasks": slowest,
    }


def timed_deploy(inventory: Path, log: Path) -> tuple[float, dict[str, object]]:
    argv = [tool("ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks/deploy.yml")]
    started = time.monotonic()
    result = run(argv, capture_output=True, env=ansible_env(), cwd=ROOT)
    elapsed = time.monotonic() - started
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"deploy_bench: deploy.yml failed (rc {result.returncode}), see {log}")
    return elapsed, parse_run(result.stdout)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="deploybench", help="name of the lab this script owns")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("deploy_bench: run as root (labctl boots systemd-nspawn hosts)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    version = registry_version()
    build_artifact(version)
    apt_cache_warm = (APT_CACHE / args.lab).is_dir()
    load_before = os.getloadavg()
    lab_down(args.lab)  # a lab of this name left by an interrupted run
    workdir = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        started = time.monotonic()
        lab_inventory = lab_up(args.lab)
        lab_up_s = time.monotonic() - started
        inventory = write_inventory(lab_inventory, workdir)
        first_s, first = timed_deploy(inventory, RESULTS / "deploy_bench-first.log")
        noop_s, noop = timed_deploy(inventory, RESULTS / "deploy_bench-noop.log")
        load_after = os.getloadavg()
    finally:
        lab_down(args.lab)
        shutil.rmtree(workdir, ignore_errors=True)  # holds the lab's random secrets

    ratio = noop_s / first_s
    figures = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hosts": list(LAB_HOSTS),
        "schema_registry_version": version,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "apt_cache_warm": apt_cache_warm,
        "lab_up_s": round(lab_up_s, 1),
        "first_converge_s": round(first_s, 1),
        "first_converge_changed": first["changed"],
        "noop_rerun_s": round(noop_s, 1),
        "noop_rerun_changed": noop["changed"],
        "noop_rerun_changed_tasks": noop["changed_tasks"],
        "noop_over_first": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio < TARGET_RATIO,
        "noop_recap": noop["recap"],
        "first_converge_slowest_tasks": first["slowest_tasks"],
        "noop_rerun_slowest_tasks": noop["slowest_tasks"],
    }
    (RESULTS / "deploy_bench.json").write_text(json.dumps(figures, indent=2) + "\n")

    print(f"hosts             {', '.join(LAB_HOSTS)}")
    print(f"load average      {figures['load_average_before']} -> {figures['load_average_after']}")
    print(f"apt cache warm    {apt_cache_warm}")
    print(f"lab up            {lab_up_s:.1f} s")
    print(f"first converge    {minutes(first_s)}  (changed={first['changed']})")
    print(f"no-op re-run      {minutes(noop_s)}  (changed={noop['changed']})")
    verdict = "meets" if ratio < TARGET_RATIO else "misses"
    print(f"no-op / first     {ratio:.3f}  ({verdict} the target < {TARGET_RATIO})")
    for name, run_figures in (("first converge", first), ("no-op re-run", noop)):
        print(f"slowest tasks of the {name}:")
        for task, seconds in run_figures["slowest_tasks"]:
            print(f"  {seconds:7.1f} s  {task}")
    print(f"saved             {RESULTS / 'deploy_bench.json'}")
    if noop["changed"]:
        print("the re-run changed something:", *noop["changed_tasks"], sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
