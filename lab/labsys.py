"""What every part of labctl uses: logging, running commands, locks, removing trees."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labpaths
from labcore import LabError


def log(message: str) -> None:
    print(f"labctl: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, raising LabError with its output when it fails."""
    result = subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)  # noqa: S603 - fixed argv lists, never a shell
    if result.returncode != 0:
        raise LabError(
            f"command failed ({result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout.strip()}\n{result.stderr.strip()}".rstrip()
        )
    return result


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Hold an exclusive flock on LAB_ROOT/locks/<name>.lock (several callers may race).

    "base" guards the base rootfs, "labs" the shared allocation (subnets, bridges,
    ip_forward), "lab-NAME" one lab's lifecycle. Never take "base" while holding "labs".
    """
    labpaths.LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with (labpaths.LOCK_DIR / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("labctl.py must run as root (it creates bridges, NAT rules and containers)")


def unmount_below(path: Path) -> None:
    """Unmount anything left mounted under path (nspawn mounts in its own namespace,
    so this only matters after a crash), deepest first, before files are removed."""
    prefix = str(path.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target.startswith(prefix) or target == prefix.rstrip("/"):
            mounts.append(target)
    for target in sorted(mounts, key=len, reverse=True):
        run(["umount", "--lazy", target])


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts whatever is mounted below (debootstrap mounts /proc
    in its chroot), so it never walks into a live file system."""
    if path.exists():
        unmount_below(path)
        shutil.rmtree(path)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
