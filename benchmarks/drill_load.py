"""Bounded load for the benchmarks and fault drills: molecule/release/loadgen.py (the
load generator of the release scenario) run as a subprocess against one address, until
finish() asks it to stop and returns its JSON summary (see loadgen.py's docstring)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOADGEN = Path(__file__).resolve().parents[1] / "molecule" / "release" / "loadgen.py"
READ = "GET /api/v1/schemas/{id}"
WRITE = "POST /api/v1/schemas"


def inventory_cafile(inventory: str) -> str:
    """The internal CA the pki role keeps beside an inventory (a file or folder)."""
    path = Path(inventory)
    return str((path if path.is_dir() else path.parent) / ".pki" / "ca.crt")


class Load:
    def __init__(
        self,
        host: str,
        work: Path,
        name: str,
        api_key: str,
        seconds: float,
        *,
        rate: float | None = None,
        workers: int | None = None,
        cafile: str | None = None,
    ) -> None:
        self.stop = work / f"{name}.stop"
        self.out = work / f"{name}.loadgen.json"
        key = work / "api_key"
        key.write_text(api_key)
        key.chmod(0o600)
        for path in (self.stop, self.out):
            path.unlink(missing_ok=True)
        options = [] if rate is None else ["--rate", str(rate)]
        options += [] if workers is None else ["--workers", str(workers)]
        options += [] if cafile is None else ["--cafile", cafile]
        self.proc = subprocess.Popen(  # noqa: S603 - our own load generator, bounded
            [
                sys.executable,
                str(LOADGEN),
                "--host",
                host,
                "--api-key-file",
                str(key),
                "--stop-file",
                str(self.stop),
                "--out",
                str(self.out),
                "--max-seconds",
                str(seconds),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> dict:
        """Stop the load and return loadgen.py's summary."""
        self.stop.touch()
        _unused, err = self.proc.communicate(timeout=60)
        if self.proc.returncode != 0:
            raise SystemExit(f"load generator failed: {err[-500:]}")
        return json.loads(self.out.read_text())


def failure_counts(summary: dict) -> dict:
    """Requests and failures of a load, failed reads and writes apart."""
    failures = summary["failures"]
    return {
        "requests": summary["requests"],
        "failed": summary["failed"],
        "failed_reads": sum(1 for f in failures if f["request"] == READ),
        "failed_writes": sum(1 for f in failures if f["request"] == WRITE),
        "failed_other": sum(1 for f in failures if f["request"] not in (READ, WRITE)),
        "failures": failures[:50],
    }
