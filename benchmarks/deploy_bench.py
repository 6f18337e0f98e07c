#!/usr/bin/env python
"""First converge and no-op re-run of the multi-host deploy (issue 4; target: the
no-op re-run takes under a quarter of the first converge).

    sudo .venv/bin/python benchmarks/deploy_bench.py [--lab deploybench] [--noop-runs 3]

Boots a lab of its own (`labctl.py up --lab deploybench`: registry1, registry2,
data1 in db+cache, lb1, the hosts of molecule/multi_host), writes a throw-away
inventory beside it (the lab's inventory.yml, inventories/local's group_vars and random
secrets from playbooks/lab_secrets.yml), then runs `playbooks/deploy.yml` twice and
times them: the first converge once, then the no-op re-run --noop-runs times (the
ratio uses their median). No re-run may change anything: the changed counts are
recorded, and a non-zero one fails the script (exit 1) after the figures are saved. The lab is
always taken down at the end, and only that lab: other labs are never touched.

Prints the figures and saves them in benchmarks/results/deploy_bench.json (with
--cold-apt-cache: deploy_bench-cold.json, -cold-first.log, ...), with the
full output of the runs in deploy_bench-first.log and deploy_bench-noop*.log. The
release artifact is built before the clock starts (as `make deploy` does), so the
first converge measures the deploy alone. Packages fetched by an earlier run stay in
the lab's apt cache (keyed by lab and host name), so the first converge installs them
without downloading; --cold-apt-cache empties that cache first, so the hosts download
every package from the Debian mirror as new servers do (slower, and it moves with the
mirror). The JSON says which it was.
Run as root (labctl boots systemd-nspawn hosts). Takes about 6 minutes.

The no-op re-run is CPU-bound (one Python module run per task and host, on the
controller and on the hosts): on this shared 2-core machine it moves with the load
average, which is saved before and after. Each run also records the CPU seconds of
the controller (ansible-playbook and its workers, ssh and local modules) and of the
whole machine (controller plus every lab host: in a real fleet the hosts' share runs
on their own CPUs), which move much less with the load than the wall time.
deploy.yml's converge play runs with the free strategy, where profile_tasks charges
each task with the time until the next task starts on any host: the slowest-task
lists there are a rough guide only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
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


def machine_cpu_seconds() -> float:
    """CPU time every process of this machine has used (/proc/stat, all CPUs)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal: all but idle and iowait
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7))
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_deploy(inventory: Path, log: Path) -> tuple[float, dict[str, object]]:
    """Wall seconds of one deploy.yml run, and its recap and CPU figures."""
    argv = [tool("ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks/deploy.yml")]
    machine, controller = machine_cpu_seconds(), children_cpu_seconds()
    started = time.monotonic()
    result = run(argv, capture_output=True, env=ansible_env(), cwd=ROOT)
    elapsed = time.monotonic() - started
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise SystemExit(f"deploy_bench: deploy.yml failed (rc {result.returncode}), see {log}")
    figures = parse_run(result.stdout)
    figures["controller_cpu_s"] = round(children_cpu_seconds() - controller, 1)
    figures["machine_cpu_s"] = round(machine_cpu_seconds() - machine, 1)
    return elapsed, figures


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--lab", default="deploybench", help="name of the lab this script owns")
    parser.add_argument(
        "--cold-apt-cache",
        action="store_true",
        help="empty the lab's apt cache first: the hosts download every package, as new servers do",
    )
    parser.add_argument(
        "--noop-runs", type=int, default=3, help="no-op re-runs after the first converge (median)"
    )
    args = parser.parse_args()
    if args.noop_runs < 1:
        raise SystemExit("deploy_bench: --noop-runs must be 1 or more")
    if os.geteuid() != 0:
        raise SystemExit("deploy_bench: run as root (labctl boots systemd-nspawn hosts)")
    return args


def measure(args: argparse.Namespace, name: str) -> dict[str, object]:
    """Boot the lab, run the first converge and the no-op re-runs, take the lab down."""
    lab_down(args.lab)  # a lab of this name left by an interrupted run
    if args.cold_apt_cache:
        shutil.rmtree(APT_CACHE / args.lab, ignore_errors=True)
    apt_cache_warm = (APT_CACHE / args.lab).is_dir()
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    try:
        started = time.monotonic()
        lab_inventory = lab_up(args.lab)
        lab_up_s = time.monotonic() - started
        inventory = write_inventory(lab_inventory, workdir)
        first = timed_deploy(inventory, RESULTS / f"{name}-first.log")
        noops = [
            timed_deploy(inventory, RESULTS / f"{name}-noop{'' if n == 0 else n + 1}.log")
            for n in range(args.noop_runs)
        ]
        load_after = os.getloadavg()
    finally:
        lab_down(args.lab)
        shutil.rmtree(workdir, ignore_errors=True)  # holds the lab's random secrets
    return {
        "apt_cache_warm": apt_cache_warm,
        "load_before": load_before,
        "load_after": load_after,
        "lab_up_s": lab_up_s,
        "first": first,
        "noops": noops,
    }


def summarize(runs: dict[str, object], version: str) -> dict[str, object]:
    first_s, first = runs["first"]
    noops = runs["noops"]
    noop_times = [seconds for seconds, _unused in noops]
    noop_s = statistics.median(noop_times)
    # The figures of the run whose time is the median (the lower middle one when even).
    noop = sorted(noops, key=lambda pair: pair[0])[(len(noops) - 1) // 2][1]
    ratio = noop_s / first_s
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "hosts": list(LAB_HOSTS),
        "schema_registry_version": version,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in runs["load_before"]],
        "load_average_after": [round(x, 2) for x in runs["load_after"]],
        "apt_cache_warm": runs["apt_cache_warm"],
        "lab_up_s": round(runs["lab_up_s"], 1),
        "first_converge_s": round(first_s, 1),
        "first_converge_changed": first["changed"],
        "first_converge_controller_cpu_s": first["controller_cpu_s"],
        "first_converge_machine_cpu_s": first["machine_cpu_s"],
        "noop_rerun_s": round(noop_s, 1),
        "noop_reruns_s": [round(seconds, 1) for seconds in noop_times],
        "noop_rerun_controller_cpu_s": [run["controller_cpu_s"] for _unused, run in noops],
        "noop_rerun_machine_cpu_s": [run["machine_cpu_s"] for _unused, run in noops],
        "noop_rerun_changed": sum(run["changed"] for _unused, run in noops),
        "noop_rerun_changed_tasks": [
            task for _unused, run in noops for task in run["changed_tasks"]
        ],
        "noop_over_first": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio < TARGET_RATIO,
        "noop_recap": noop["recap"],
        "first_converge_slowest_tasks": first["slowest_tasks"],
        "noop_rerun_slowest_tasks": noop["slowest_tasks"],
    }


def report(figures: dict[str, object], runs: dict[str, object], saved: Path) -> None:
    first_s, first = runs["first"]
    print(f"hosts             {', '.join(LAB_HOSTS)}")
    print(f"load average      {figures['load_average_before']} -> {figures['load_average_after']}")
    print(f"apt cache warm    {figures['apt_cache_warm']}")
    print(f"lab up            {figures['lab_up_s']:.1f} s")
    print(
        f"first converge    {minutes(first_s)}  (changed={first['changed']}, CPU s: "
        f"controller {first['controller_cpu_s']}, machine {first['machine_cpu_s']})"
    )
    for seconds, run in runs["noops"]:
        print(
            f"no-op re-run      {minutes(seconds)}  (changed={run['changed']}, CPU s: "
            f"controller {run['controller_cpu_s']}, machine {run['machine_cpu_s']})"
        )
    print(f"no-op median      {minutes(figures['noop_rerun_s'])}")
    ratio = figures["noop_over_first"]
    verdict = "meets" if figures["meets_target"] else "misses"
    print(f"no-op / first     {ratio:.3f}  ({verdict} the target < {TARGET_RATIO})")
    for name, key in (("first converge", "first_converge"), ("no-op re-run", "noop_rerun")):
        print(f"slowest tasks of the {name}:")
        for task, seconds in figures[f"{key}_slowest_tasks"]:
            print(f"  {seconds:7.1f} s  {task}")
    print(f"saved             {saved}")


def main() -> int:
    args = parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    version = registry_version()
    build_artifact(version)
    # A cold-cache run keeps its own files: the warm one is the figure the README quotes.
    name = "deploy_bench-cold" if args.cold_apt_cache else "deploy_bench"
    runs = measure(args, name)
    figures = summarize(runs, version)
    saved = RESULTS / f"{name}.json"
    saved.write_text(json.dumps(figures, indent=2) + "\n")
    report(figures, runs, saved)
    if figures["noop_rerun_changed_tasks"]:
        print("a re-run changed something:", *figures["noop_rerun_changed_tasks"], sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
