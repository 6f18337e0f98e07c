"""SSH to lab hosts: the key, the ssh command line, waiting until a host answers,
and what the host itself says when it does not.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from labcore import LAB_USER, LabError
from labproc import descendants, host_alive, pid_parent
from labsys import run, tail

KEY_NAME = "id_ed25519"
SSH_TIMEOUT = 300.0  # generous: a machine busy with parallel test runs boots slowly
SSH_PROBE_TIMEOUT = 30


def ensure_key(state_dir: Path) -> Path:
    key = state_dir / KEY_NAME
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmops-lab", "-f", str(key)])
    return key


def ssh_ready(host: dict[str, Any], key: Path) -> str | None:
    """None once the host accepts our key for LAB_USER and sudo works without a
    password, else why not (kept for the error message)."""
    try:
        with socket.create_connection((host["address"], 22), timeout=2):
            pass
    except OSError as error:
        return f"port 22: {error}"
    try:
        result = ssh_probe(host, key)
    except subprocess.TimeoutExpired:
        return f"ssh gave no answer within {SSH_PROBE_TIMEOUT} s"
    if result.returncode != 0:
        # LogLevel=ERROR hides "Connection closed by ...": say at least how ssh ended.
        message = result.stderr.decode(errors="replace").strip() or "no message"
        return f"ssh exit {result.returncode}: {message}"
    return None


def ssh_command(key: Path, connect_timeout: int) -> list[str]:
    """ssh to a lab host: key only, no prompts, host keys neither checked nor kept
    (every boot makes new ones). The connect timeout also bounds the banner exchange,
    which is slow on a loaded machine."""
    return [
        "ssh",
        "-i",
        str(key),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-o",
        "LogLevel=ERROR",
    ]


def ssh_probe(host: dict[str, Any], key: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # noqa: S603 - fixed argv
        [  # the system's ssh client, found on PATH like every tool here
            *ssh_command(key, SSH_PROBE_TIMEOUT // 2),
            f"{LAB_USER}@{host['address']}",
            "sudo",
            "-n",
            "true",
        ],
        capture_output=True,
        check=False,
        timeout=SSH_PROBE_TIMEOUT,
    )


def wait_for_ssh(host: dict[str, Any], key: Path) -> None:
    deadline = time.monotonic() + SSH_TIMEOUT
    why = "not tried"
    while time.monotonic() < deadline:
        if not host_alive(host):
            raise LabError(
                f"host {host['name']} exited while booting; log {host['log']}:\n"
                + tail(Path(host["log"]))
            )
        why = ssh_ready(host, key)
        if why is None:
            return
        time.sleep(0.3)
    raise LabError(
        f"host {host['name']} did not answer SSH within {SSH_TIMEOUT:.0f} s "
        f"(last try: {why}); log {host['log']}:\n"
        + tail(Path(host["log"]))
        + "\ninside the host:\n"
        + inside_view(host)
    )


# What the host itself says about its boot and sshd: the client only sees a closed
# connection, the reason is in the host's journal.
INSIDE_COMMANDS = (
    ("systemctl", "is-system-running"),
    ("systemctl", "--failed", "--no-legend", "--no-pager"),
    ("ls", "-l", "/run/nologin"),
    ("journalctl", "-b", "--no-pager", "-n", "25", "_COMM=sshd"),
)


def inside_view(host: dict[str, Any]) -> str:
    """The output of INSIDE_COMMANDS run in the host's namespaces (via its init)."""
    children = [pid for pid in descendants(host["pid"]) if pid_parent(pid) == host["pid"]]
    if not children:
        return "(no init process)"
    lines = []
    for command in INSIDE_COMMANDS:
        argv = ["nsenter", "-t", str(children[0]), "-a", *command]
        result = subprocess.run(  # noqa: S603 - fixed argv
            argv,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        lines.append(f"$ {' '.join(command)}\n{(result.stdout + result.stderr).strip()}")
    return "\n".join(lines)
