"""Time the lab: `up` and `down` of 1 and 4 hosts, and the lab_smoke Molecule scenario.

Prints the figures and saves them as JSON in benchmarks/results/lab-<UTC time>.json.
Run as root from the repository:  sudo python3 lab/bench_lab.py [--runs 3] [--molecule]
The base rootfs must exist (`labctl.py base`); its build time is measured only with
--base-rebuild, which refuses while any lab is up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LABCTL = REPO / "lab" / "labctl.py"
RESULTS = REPO / "benchmarks" / "results"


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)  # noqa: S603 - fixed argv
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{result.stdout}\n{result.stderr}")
    return elapsed


def labctl(*args: str) -> list[str]:
    return [sys.executable, str(LABCTL), *args]


def summary(samples: list[float]) -> dict[str, float | list[float]]:
    return {
        "runs": [round(s, 2) for s in samples],
        "median_s": round(statistics.median(samples), 2),
        "min_s": round(min(samples), 2),
        "max_s": round(max(samples), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions of up/down")
    parser.add_argument("--molecule", action="store_true", help="also time lab_smoke")
    parser.add_argument("--base-rebuild", action="store_true", help="also time a base build")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")

    figures: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_start": os.getloadavg(),
        },
    }
    if args.base_rebuild:
        figures["base_build"] = summary([timed(labctl("base", "--rebuild"))])

    lab = "bench-lab"  # fixed: its kept apt caches and lock file are reused
    for count in (1, 4):
        hosts = [arg for i in range(count) for arg in ("--host", f"h{i}")]
        ups, downs = [], []
        for _attempt in range(args.runs):
            ups.append(timed(labctl("up", "--lab", lab, *hosts)))
            downs.append(timed(labctl("down", "--lab", lab)))
        figures[f"up_{count}_hosts"] = summary(ups)
        figures[f"down_{count}_hosts"] = summary(downs)

    if args.molecule:
        env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
        started = time.monotonic()
        result = subprocess.run(  # noqa: S603 - fixed argv
            [str(REPO / ".venv" / "bin" / "molecule"), "test", "-s", "lab_smoke"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        figures["molecule_lab_smoke_test"] = {
            "seconds": round(time.monotonic() - started, 1),
            "passed": result.returncode == 0,
        }
    figures["machine"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"lab-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    for name, value in figures.items():
        print(f"{name}: {json.dumps(value)}")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
