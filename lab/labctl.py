"""Boot and stop labs of real Debian 12 test hosts with systemd-nspawn.

Usage (as root):
  labctl.py base [--rebuild]
  labctl.py up --lab NAME --host HOST[:group,group] [--host ...] [--state-dir DIR]
  labctl.py down --lab NAME | --all
  labctl.py kill --lab NAME --host HOST [--host ...]   (pull the plug: SIGKILL, no shutdown)
  labctl.py boot --lab NAME [--host HOST ...]          (boot stopped hosts again)
  labctl.py list

See lab/README.md for how it works and what `down` guarantees.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from labcore import (
    LAB_USER,
    HostSpec,
    LabError,
    allocate_index,
    bridge_mac,
    bridge_name,
    gateway_address,
    host_addresses,
    lab_network,
    parse_host_specs,
    render_etc_hosts,
    render_instance_config,
    render_inventory,
    render_network_unit,
    usable_resolv_conf,
    validate_lab_name,
)

LAB_ROOT = Path(os.environ.get("LLMOPS_LAB_ROOT", "/var/lib/llmops-lab"))
BASE_DIR = LAB_ROOT / "base-bookworm"
BASE_STAMP = ".llmops-lab-base"  # written last: a base without it is unfinished
# Bump when configure_base() changes: `up` then rebuilds an older base if no lab uses it.
BASE_VERSION = 2
RUN_DIR = LAB_ROOT / "run"  # internal state per lab, removed by `down`
LABS_DIR = LAB_ROOT / "labs"  # default state dirs (inventory, key) per lab
APT_CACHE_DIR = LAB_ROOT / "apt-cache"  # persistent per lab+host apt archives
# Every .deb any host downloaded, shared by all labs: hard-linked into a host's own
# archives before it boots and collected back when its lab goes down.
APT_POOL_DIR = APT_CACHE_DIR / "pool"
DEBOOTSTRAP_CACHE = LAB_ROOT / "debootstrap-cache"
FORWARD_SAVED = LAB_ROOT / "ip_forward.saved"
LOCK_DIR = LAB_ROOT / "locks"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "openssh-server",
    "iproute2",
    "sudo",
    "ca-certificates",
)
KEY_NAME = "id_ed25519"
STATE_FILES = ("inventory.yml", "instance_config.yml", KEY_NAME, f"{KEY_NAME}.pub")
SSH_TIMEOUT = 300.0  # generous: a machine busy with parallel test runs boots slowly
SSH_PROBE_TIMEOUT = 30
STOP_TIMEOUT = 20.0
IPT_COMMENT_PREFIX = "llmops-lab:"
USER_SESSIONS_RETRY = "[Service]\nRestart=on-failure\nRestartSec=1\n"


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
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with (LOCK_DIR / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- base


def base_version() -> int | None:
    """Version of the finished base rootfs, None when there is none."""
    try:
        return int(json.loads((BASE_DIR / BASE_STAMP).read_text()).get("version", 1))
    except (FileNotFoundError, ValueError):
        return None


def chroot(root: Path, *cmd: str) -> None:
    run(["chroot", str(root), *cmd], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})


def configure_base(root: Path) -> None:
    """Make a fresh debootstrap tree a lab host image."""
    (root / "etc/dpkg/dpkg.cfg.d/llmops-lab-unsafe-io").write_text(
        "# Throwaway test hosts: skip fsync, roughly halves install time.\nforce-unsafe-io\n"
    )
    (root / "etc/apt/apt.conf.d/90llmops-lab").write_text(
        "// Keep downloaded packages: /var/cache/apt/archives is a persistent per-host cache.\n"
        'Binary::apt::APT::Keep-Downloaded-Packages "true";\n'
        'APT::Keep-Downloaded-Packages "true";\n'
        "// Test hosts need no translated descriptions: 6 MB less per apt update.\n"
        'Acquire::Languages "none";\n'
    )
    # One host key type: ed25519 keys are generated in milliseconds, RSA ones take seconds.
    (root / "etc/ssh/sshd_config.d/llmops-lab.conf").write_text(
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
    )
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} bookworm main\n"
        f"deb {MIRROR} bookworm-updates main\n"
        f"deb {SECURITY_MIRROR} bookworm-security main\n"
    )
    chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", LAB_USER)
    sudoers = root / "etc/sudoers.d/llmops-lab"
    sudoers.write_text(f"{LAB_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    chroot(root, "systemctl", "enable", "systemd-networkd.service")
    # Every host gets its own keys and machine-id in its upper dir.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/machine-id").write_text("")
    with contextlib.suppress(FileNotFoundError):
        (root / "var/lib/dbus/machine-id").unlink()
    (root / "etc/hostname").write_text("localhost\n")
    # No package lists or packages in the image: each host has its own persistent
    # cache directories mounted there.
    for cache in ("var/lib/apt/lists", "var/cache/apt/archives"):
        shutil.rmtree(root / cache, ignore_errors=True)
        (root / cache / "partial").mkdir(parents=True)


def build_base(rebuild: bool) -> None:
    """Build the cached base rootfs once; concurrent callers wait on the lock."""
    require_root()
    with locked("base"):
        version = base_version()
        if version == BASE_VERSION and not rebuild:
            return
        if version is not None and running_labs():
            if not rebuild:
                log(
                    f"base is version {version}, {BASE_VERSION} is current: labs use it, "
                    "keeping it (`down --all` then `base --rebuild` to update)"
                )
                return
            raise LabError("labs are running on the base: `labctl.py down --all` first")
        staging = LAB_ROOT / "base-bookworm.building"
        remove_tree(staging)  # an earlier build that was cut short
        DEBOOTSTRAP_CACHE.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log(f"building base rootfs in {BASE_DIR} (about a minute)")
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    f"--cache-dir={DEBOOTSTRAP_CACHE}",
                    "bookworm",
                    str(staging),
                    MIRROR,
                ]
            )
            configure_base(staging)
        except BaseException:
            remove_tree(staging)
            raise
        (staging / BASE_STAMP).write_text(
            json.dumps(
                {"version": BASE_VERSION, "built_at": time.time(), "packages": BASE_PACKAGES}
            )
            + "\n"
        )
        with locked("labs"):  # no lab may boot while the base is swapped
            if running_labs():
                remove_tree(staging)
                raise LabError("a lab came up during the rebuild: `labctl.py down --all` first")
            remove_tree(BASE_DIR)
            staging.rename(BASE_DIR)
        log(f"base rootfs ready in {time.monotonic() - started:.0f} s")


# --------------------------------------------------------------------------- state


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("labctl.py must run as root (it creates bridges, NAT rules and containers)")


def lab_run_dir(lab: str) -> Path:
    return RUN_DIR / lab


def load_state(lab: str) -> dict[str, Any] | None:
    path = lab_run_dir(lab) / "state.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def save_state(state: dict[str, Any]) -> None:
    path = lab_run_dir(state["lab"]) / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.rename(path)


def all_states() -> list[dict[str, Any]]:
    if not RUN_DIR.is_dir():
        return []
    states = []
    for entry in sorted(RUN_DIR.iterdir()):
        state = load_state(entry.name)
        if state is not None:
            states.append(state)
    return states


def running_labs() -> list[str]:
    return [state["lab"] for state in all_states()]


# --------------------------------------------------------------------------- processes


def process_start_time(pid: int) -> str | None:
    """Start time of a live pid (clock ticks since boot), to tell a reused pid apart.

    None when the process is gone or a zombie (exited, not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return parse_start_time(stat)


def parse_start_time(stat: str) -> str | None:
    # The command name (field 2) may hold spaces and ')', so split after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    state, start_time = fields[0], fields[19]
    return None if state in ("Z", "X") else start_time


def host_alive(host: dict[str, Any]) -> bool:
    pid = host.get("pid")
    if not pid:
        return False
    return process_start_time(pid) == host.get("pid_start")


def descendants(pid: int) -> list[int]:
    """Every process below pid (the container's init and all it runs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        ppid = pid_parent(int(entry.name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# A process is named by (pid, start time): a pid alone may have been reused.
Proc = tuple[int, str]


def identify(pids: list[int]) -> list[Proc]:
    return [(pid, start) for pid in pids if (start := process_start_time(pid)) is not None]


def still_running(procs: list[Proc]) -> list[Proc]:
    return [proc for proc in procs if process_start_time(proc[0]) == proc[1]]


def send_signal(procs: list[Proc], signum: int) -> None:
    for pid, _unused in still_running(procs):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def wait_gone(procs: list[Proc], timeout: float) -> list[Proc]:
    deadline = time.monotonic() + timeout
    alive = still_running(procs)
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = still_running(alive)
    return alive


# --------------------------------------------------------------------------- network


def taken_networks() -> list[ipaddress.IPv4Network]:
    """Networks already addressed or routed on this machine."""
    networks: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]"):
        for info in entry.get("addr_info", []):
            networks.append(
                ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            )
    routes = run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout
    for route in json.loads(routes or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("type") in ("local", "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.IPv4Network(dst, strict=False))
    return networks


def iptables_rules(state: dict[str, Any]) -> list[list[str]]:
    """The rules a lab adds: NAT out for apt, and forwarding to and from its bridge."""
    bridge = state["bridge"]
    subnet = state["subnet"]
    comment = ["-m", "comment", "--comment", f"{IPT_COMMENT_PREFIX}{state['lab']}"]
    return [
        ["-t", "nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE", *comment],
        ["-t", "filter", "FORWARD", "-i", bridge, "-j", "ACCEPT", *comment],
        ["-t", "filter", "FORWARD", "-o", bridge, "-j", "ACCEPT", *comment],
    ]


def iptables(action: str, rule: list[str]) -> bool:
    table_args, chain, spec = rule[:2], rule[2], rule[3:]
    cmd = ["iptables", "-w", *table_args, action, chain, *spec]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603 - fixed argv
    if action != "-C" and result.returncode != 0:
        raise LabError(f"iptables failed: {' '.join(cmd)}: {result.stderr.strip()}")
    return result.returncode == 0


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def setup_network(state: dict[str, Any]) -> None:
    bridge = state["bridge"]
    if not link_exists(bridge):
        run(["ip", "link", "add", bridge, "type", "bridge"])
    # A bridge without an address of its own takes the lowest of its ports' MACs, so
    # killing that host changed the gateway's MAC under every other host: their replies
    # went to the old one until ARP caught up, stalling all traffic of the lab (seen as
    # every in-flight request of a fault drill timing out at once).
    run(["ip", "link", "set", "dev", bridge, "address", bridge_mac(state["index"])])
    gateway = f"{gateway_address(state['index'])}/24"
    addrs = run(["ip", "-j", "-4", "addr", "show", "dev", bridge]).stdout
    if gateway.split("/", maxsplit=1)[0] not in addrs:
        run(["ip", "addr", "add", gateway, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    with locked("labs"):
        enable_forwarding()
        raise_inotify_limits()
    for rule in iptables_rules(state):
        if not iptables("-C", rule):
            iptables("-A", rule)


def teardown_network(state: dict[str, Any]) -> None:
    for rule in iptables_rules(state):
        while iptables("-C", rule):
            iptables("-D", rule)
    if link_exists(state["bridge"]):
        run(["ip", "link", "del", state["bridge"]])


def enable_forwarding() -> None:
    """Turn on IPv4 forwarding for NAT, remembering the old value for the last `down`."""
    knob = Path("/proc/sys/net/ipv4/ip_forward")
    current = knob.read_text().strip()
    if current != "1":
        if not FORWARD_SAVED.exists():
            FORWARD_SAVED.write_text(current + "\n")
        knob.write_text("1\n")


# Every lab host's systemd and its services run as the build machine's root and each
# takes inotify instances: the kernel's default of 128 per user stops the 20th host or
# so from booting ("Too many open files"). Raised, never lowered.
INOTIFY_LIMITS = {
    "/proc/sys/fs/inotify/max_user_instances": 4096,
    "/proc/sys/fs/inotify/max_user_watches": 524288,
}


def raise_inotify_limits() -> None:
    for path, wanted in INOTIFY_LIMITS.items():
        knob = Path(path)
        with contextlib.suppress(OSError, ValueError):
            if int(knob.read_text()) < wanted:
                knob.write_text(f"{wanted}\n")


def restore_forwarding() -> None:
    if FORWARD_SAVED.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(FORWARD_SAVED.read_text())
        FORWARD_SAVED.unlink()


# --------------------------------------------------------------------------- hosts


def ensure_key(state_dir: Path) -> Path:
    key = state_dir / KEY_NAME
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmops-lab", "-f", str(key)])
    return key


def base_ids(name: str) -> tuple[int, int]:
    """uid and gid of a user inside the base image."""
    for line in (BASE_DIR / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise LabError(f"user {name!r} missing from the base image: run `labctl.py base --rebuild`")


def seed_upper(
    upper: Path,
    state: dict[str, Any],
    host: dict[str, Any],
    *,
    specs: list[HostSpec],
    public_key: str,
    resolv_conf: str,
) -> None:
    """Files a host starts with on top of the shared base (first boot only)."""
    upper.mkdir(parents=True)
    upper.chmod(0o755)  # the upper dir's mode becomes the mode of / in the host
    etc = upper / "etc"
    (etc / "systemd/network").mkdir(parents=True)
    (etc / "ssh").mkdir()
    (etc / "hostname").write_text(host["name"] + "\n")
    (etc / "machine-id").write_text(host["machine_id"] + "\n")
    addresses = [ipaddress.IPv4Address(h["address"]) for h in state["hosts"]]
    (etc / "hosts").write_text(render_etc_hosts(specs, addresses))
    (etc / "resolv.conf").write_text(resolv_conf)
    # No background apt on test hosts: apt-daily would hold apt's lock while roles
    # install packages, and it pulls in network-online.target at random times.
    (etc / "systemd/system").mkdir(parents=True)
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        (etc / "systemd/system" / timer).symlink_to("/dev/null")
    # Now and then a unit started at boot fails with 219/CGROUP ("Failed to attach to
    # cgroup ...: No such file or directory", a race in this machine's cgroup v1
    # hierarchy). When that unit is systemd-user-sessions, /run/nologin stays and sshd
    # refuses every login for good: let it try again.
    dropin = etc / "systemd/system/systemd-user-sessions.service.d"
    dropin.mkdir(parents=True)
    (dropin / "llmops-lab-retry.conf").write_text(USER_SESSIONS_RETRY)
    (etc / "systemd/network/80-container-host0.network").write_text(
        render_network_unit(ipaddress.IPv4Address(host["address"]), state["index"])
    )
    run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"root@{host['name']}",
            "-f",
            str(etc / "ssh/ssh_host_ed25519_key"),
        ]
    )
    uid, gid = base_ids(LAB_USER)
    ssh_dir = upper / "home" / LAB_USER / ".ssh"
    ssh_dir.mkdir(parents=True)
    (upper / "home").chmod(0o755)
    (upper / "home" / LAB_USER).chmod(0o755)
    os.chown(upper / "home" / LAB_USER, uid, gid)
    ssh_dir.chmod(0o700)
    os.chown(ssh_dir, uid, gid)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(public_key)
    keys.chmod(0o600)
    os.chown(keys, uid, gid)


def build_machine_resolver() -> str:
    """The build machine's resolv.conf, or systemd-resolved's upstream list when the
    former points at a loopback stub the hosts cannot reach."""
    candidates = []
    for path in (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf")):
        with contextlib.suppress(OSError):
            candidates.append((str(path), path.read_text()))
    return usable_resolv_conf(candidates)


def ensure_apt_cache(cache: Path) -> None:
    """Per-host apt archives and lists, kept across runs (a shared one breaks on apt's
    lock), with every .deb of the shared pool linked in, so a new lab host downloads
    only what no lab host has downloaded before."""
    for sub in ("archives", "lists"):
        if not (cache / sub).exists():
            (cache / sub / "partial").mkdir(parents=True)
            if sub == "lists":
                # apt's cache_valid_time reads this mtime: empty lists must look stale.
                os.utime(cache / sub, (0, 0))
    link_debs(APT_POOL_DIR, cache / "archives")


def link_debs(source: Path, target: Path) -> int:
    """Hard-link every .deb of source that target lacks (a copy across file systems).
    apt never rewrites a downloaded .deb in place, so sharing the inode is safe."""
    if not source.is_dir():
        return 0
    target.mkdir(parents=True, exist_ok=True)
    linked = 0
    for deb in source.glob("*.deb"):
        dest = target / deb.name
        if dest.exists():
            continue
        try:
            os.link(deb, dest)
        except OSError:
            shutil.copy2(deb, dest)
        linked += 1
    return linked


def collect_debs(state: dict[str, Any]) -> None:
    """Put what the lab's hosts downloaded into the shared pool."""
    for host in state["hosts"]:
        link_debs(Path(host["apt_cache"]) / "archives", APT_POOL_DIR)


def nspawn_command(state: dict[str, Any], host: dict[str, Any]) -> list[str]:
    upper = Path(host["upper"])
    return [
        "systemd-nspawn",
        "--quiet",
        "--boot",
        "--register=no",  # the build machine's PID 1 is not systemd
        "--keep-unit",
        f"--machine={host['machine']}",
        f"--hostname={host['name']}",
        f"--uuid={host['machine_id']}",
        f"--directory={BASE_DIR}",
        f"--overlay={BASE_DIR}:{upper}:/",
        f"--network-bridge={state['bridge']}",
        f"--bind={host['apt_cache']}/archives:/var/cache/apt/archives",
        f"--bind={host['apt_cache']}/lists:/var/lib/apt/lists",
        "--resolv-conf=off",  # the upper dir holds a copy of the build machine's resolver
        "--timezone=off",
        "--link-journal=no",  # keep the host's journal out of the build machine's /var/log
        "--console=read-only",
    ]


def start_host(state: dict[str, Any], host: dict[str, Any]) -> None:
    logfile = Path(host["log"])
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            nspawn_command(state, host),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives labctl and its terminal
        )
    host["pid"] = proc.pid
    host["pid_start"] = process_start_time(proc.pid)


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


def pid_parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def stop_hosts(state: dict[str, Any]) -> None:
    """Power off every host (SIGTERM asks nspawn for a clean shutdown), then kill leftovers."""
    leaders = [(host["pid"], host["pid_start"]) for host in state["hosts"] if host_alive(host)]
    send_signal(leaders, signal.SIGTERM)
    left = wait_gone(leaders, STOP_TIMEOUT)
    if not left:
        return  # when nspawn ends, its container's PID namespace goes with it
    log(f"lab {state['lab']}: {len(left)} host(s) ignored the poweroff, killing them")
    victims = left + identify([child for pid, _unused in left for child in descendants(pid)])
    send_signal(victims, signal.SIGKILL)
    still = wait_gone(victims, 5)
    if still:
        raise LabError(
            f"processes {[pid for pid, _unused in still]} of lab {state['lab']} would not die"
        )


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


# --------------------------------------------------------------------------- commands


def write_state_files(state: dict[str, Any], specs: list[HostSpec]) -> Path:
    state_dir = Path(state["state_dir"])
    key = state_dir / KEY_NAME
    addresses = [ipaddress.IPv4Address(h["address"]) for h in state["hosts"]]
    inventory = state_dir / "inventory.yml"
    inventory.write_text(render_inventory(specs, addresses, str(key)))
    (state_dir / "instance_config.yml").write_text(
        render_instance_config(specs, addresses, str(key))
    )
    return inventory


def specs_of(state: dict[str, Any]) -> list[HostSpec]:
    return [HostSpec(h["name"], tuple(h["groups"])) for h in state["hosts"]]


def new_state(lab: str, specs: list[HostSpec], state_dir: Path) -> dict[str, Any]:
    used = [state["index"] for state in all_states()]
    index = allocate_index(used, taken_networks())
    run_dir = lab_run_dir(lab)
    addresses = host_addresses(index, len(specs))
    return {
        "lab": lab,
        "index": index,
        "subnet": str(lab_network(index)),
        "bridge": bridge_name(index),
        "state_dir": str(state_dir),
        "created_at": time.time(),
        "hosts": [
            {
                "name": spec.name,
                "groups": list(spec.groups),
                "address": str(address),
                "machine": f"lab{index}-{spec.name}",
                "machine_id": uuid.uuid4().hex,
                "upper": str(run_dir / "hosts" / spec.name / "upper"),
                "log": str(run_dir / "logs" / f"{spec.name}.log"),
                "apt_cache": str(APT_CACHE_DIR / lab / spec.name),
                "pid": None,
                "pid_start": None,
            }
            for spec, address in zip(specs, addresses, strict=True)
        ],
    }


def cmd_up(lab: str, host_args: list[str], state_dir_arg: str | None) -> None:
    validate_lab_name(lab)
    specs = parse_host_specs(host_args)
    require_root()
    state_dir = Path(state_dir_arg).resolve() if state_dir_arg else LABS_DIR / lab
    build_base(rebuild=False)
    if base_version() is None:
        raise LabError(f"no base rootfs in {BASE_DIR}: run `labctl.py base`")
    with locked(f"lab-{lab}"):
        with locked("labs"):
            state = load_state(lab)
            if state is not None:
                check_same_lab(state, specs, state_dir)
            else:
                state = new_state(lab, specs, state_dir)
                save_state(state)  # recorded first, so `down` can clean up a half-built lab
        try:
            bring_up(state, specs)
        except BaseException:
            log(f"up failed: removing lab {lab}")
            try:
                teardown(state)
            except LabError as error:
                log(f"cleanup after the failed up failed too: {error}")
            raise
    print(state_dir / "inventory.yml")


def check_same_lab(state: dict[str, Any], specs: list[HostSpec], state_dir: Path) -> None:
    """`up` of a lab that exists must ask for the same hosts and state dir."""
    lab = state["lab"]
    if specs_of(state) != specs:
        names = ", ".join(h["name"] for h in state["hosts"])
        raise LabError(
            f"lab {lab} is already up with other hosts ({names}): "
            f"`labctl.py down --lab {lab}` first"
        )
    if Path(state["state_dir"]) != state_dir:
        raise LabError(
            f"lab {lab} is already up with state dir {state['state_dir']}, not {state_dir}"
        )


def bring_up(state: dict[str, Any], specs: list[HostSpec]) -> None:
    state_dir = Path(state["state_dir"])
    state_dir.mkdir(parents=True, exist_ok=True)
    key = ensure_key(state_dir)
    public_key = (state_dir / f"{KEY_NAME}.pub").read_text()
    setup_network(state)
    to_boot = [host for host in state["hosts"] if not host_alive(host)]
    for host in to_boot:
        upper = Path(host["upper"])
        if not upper.exists():
            seed_upper(
                upper,
                state,
                host,
                specs=specs,
                public_key=public_key,
                resolv_conf=build_machine_resolver(),
            )
        ensure_apt_cache(Path(host["apt_cache"]))
        start_host(state, host)
    save_state(state)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(to_boot))) as pool:
        for future in [pool.submit(wait_for_ssh, host, key) for host in to_boot]:
            future.result()
    if to_boot:
        log(f"{len(to_boot)} host(s) answer SSH after {time.monotonic() - started:.1f} s")
    write_state_files(state, specs)


def teardown(state: dict[str, Any]) -> None:
    stop_hosts(state)
    with locked("apt-pool"):
        collect_debs(state)
    teardown_network(state)
    run_dir = lab_run_dir(state["lab"])
    remove_tree(run_dir)
    state_dir = Path(state["state_dir"])
    for name in STATE_FILES:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    if state_dir.parent == LABS_DIR:
        with contextlib.suppress(OSError):
            state_dir.rmdir()
    with locked("labs"):
        if not all_states():
            restore_forwarding()


def cmd_down(lab: str | None, everything: bool) -> None:
    if lab is not None:
        validate_lab_name(lab)
    require_root()
    names = [state["lab"] for state in all_states()] if everything else [lab or ""]
    stopped = 0
    for name in names:
        with locked(f"lab-{name}"):
            state = load_state(name)  # read again: it may have gone meanwhile
            if state is not None:
                teardown(state)
                stopped += 1
                log(f"lab {name} is down")
    if everything:
        sweep_orphans()
    if not stopped:
        log("no lab was up" if everything else f"lab {lab} is not up: nothing to do")


def sweep_orphans() -> None:
    """Remove what labs left behind without a state to name it (a crash, a deleted
    run dir): iptables rules tagged llmops-lab:, llmlabN bridges, nspawn processes on
    our base, run dirs without a state. Things of labs that are up are left alone."""
    with locked("labs"):
        states = all_states()
        labs = {state["lab"] for state in states}
        bridges = {state["bridge"] for state in states}
        machines = {host["machine"] for state in states for host in state["hosts"]}
        for table in ("nat", "filter"):
            listing = run(["iptables", "-w", "-t", table, "-S"]).stdout.splitlines()
            for line in listing:
                owner = orphan_rule_owner(line, labs)
                if owner is not None:
                    log(f"removing orphaned iptables rule of lab {owner}: {line}")
                    run(["iptables", "-w", "-t", table, "-D", *shlex.split(line)[1:]])
        for pid, machine in nspawn_processes():
            if machine not in machines:
                log(f"stopping orphaned host {machine} (pid {pid})")
                stop_hosts(
                    {
                        "lab": "(orphans)",
                        "hosts": [{"pid": pid, "pid_start": process_start_time(pid)}],
                    }
                )
        for link in sorted(Path("/sys/class/net").glob("llmlab*")):
            if re.fullmatch(r"llmlab\d+", link.name) and link.name not in bridges:
                log(f"removing orphaned bridge {link.name}")
                run(["ip", "link", "del", link.name])
        if RUN_DIR.is_dir():
            for entry in RUN_DIR.iterdir():
                if entry.name not in labs:
                    log(f"removing orphaned run dir {entry}")
                    remove_tree(entry)
        if not states:
            restore_forwarding()


def orphan_rule_owner(rule: str, labs: set[str]) -> str | None:
    """The lab named in an `iptables -S` line's llmops-lab: comment, if that lab is gone."""
    words = shlex.split(rule)
    if not words or words[0] != "-A" or "--comment" not in words:
        return None
    comment = words[words.index("--comment") + 1]
    if not comment.startswith(IPT_COMMENT_PREFIX):
        return None
    owner = comment.removeprefix(IPT_COMMENT_PREFIX)
    return None if owner in labs else owner


def nspawn_processes() -> list[tuple[int, str]]:
    """(pid, machine name) of every systemd-nspawn running on our base rootfs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [arg.decode(errors="replace") for arg in argv]
        if not args or not args[0].endswith("systemd-nspawn"):
            continue
        if f"--directory={BASE_DIR}" not in args:
            continue
        machine = next((a.split("=", 1)[1] for a in args if a.startswith("--machine=")), "")
        found.append((int(entry.name), machine))
    return found


def select_hosts(state: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    known = {host["name"]: host for host in state["hosts"]}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise LabError(
            f"lab {state['lab']} has no host {', '.join(unknown)} (its hosts: {', '.join(known)})"
        )
    return [known[name] for name in names] if names else list(known.values())


def clear_host_veth(host: dict[str, Any]) -> None:
    """nspawn names the host side of a host's veth vb-<machine>; after a SIGKILL the
    kernel removes it only when the host's network namespace is gone, which may lag, and
    a boot meanwhile fails with "File exists". Wait for it, then remove it ourselves."""
    name = f"vb-{host['machine']}"
    if len(name) > 15:  # nspawn shortens such names: nothing we can name safely
        return
    deadline = time.monotonic() + 10
    while link_exists(name) and time.monotonic() < deadline:
        time.sleep(0.2)
    if link_exists(name):
        with contextlib.suppress(LabError):  # gone meanwhile
            run(["ip", "link", "del", name])


@contextlib.contextmanager
def lab_that_is_up(lab: str) -> Iterator[dict[str, Any]]:
    """The state of a lab that is up, under its lock (kill and boot act on its hosts)."""
    validate_lab_name(lab)
    require_root()
    with locked(f"lab-{lab}"):
        state = load_state(lab)
        if state is None:
            raise LabError(f"lab {lab} is not up")
        yield state


def cmd_kill(lab: str, names: list[str]) -> None:
    """Kill hosts: SIGKILL to nspawn and everything below it, no shutdown, as a crashed
    machine would do: its services get no chance to hand over and its address goes
    away at once. Their disks (upper dirs) stay. Not a power cut: what the processes
    had written is in the build machine's page cache and survives."""
    with lab_that_is_up(lab) as state:
        for host in select_hosts(state, names):
            if not host_alive(host):
                log(f"host {host['name']} is already stopped")
                continue
            leader = (host["pid"], host["pid_start"])
            victims = [leader, *identify(descendants(host["pid"]))]
            send_signal(victims, signal.SIGKILL)
            if wait_gone(victims, 10):
                raise LabError(f"host {host['name']} would not die")
            clear_host_veth(host)
            log(f"host {host['name']} killed")


def cmd_boot(lab: str, names: list[str]) -> None:
    """Boot stopped hosts of a lab again on their kept disks (like a power-on)."""
    with lab_that_is_up(lab) as state:
        key = Path(state["state_dir"]) / KEY_NAME
        wanted = select_hosts(state, names)
        to_boot = [host for host in wanted if not host_alive(host)]
        for host in to_boot:
            clear_host_veth(host)
            start_host(state, host)
        save_state(state)
        for host in to_boot:
            wait_for_ssh(host, key)
        log(f"{len(to_boot)} host(s) booted")


def cmd_list() -> None:
    states = all_states()
    if not states:
        print("no labs")
        return
    for state in states:
        print(
            f"{state['lab']}  bridge {state['bridge']}  subnet {state['subnet']}  "
            f"state dir {state['state_dir']}"
        )
        for host in state["hosts"]:
            status = "running" if host_alive(host) else "stopped"
            groups = ",".join(host["groups"]) or "-"
            print(f"  {host['name']:<20} {host['address']:<15} {status:<8} groups {groups}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="labctl.py", description=__doc__.split("\n", maxsplit=1)[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="build the cached base rootfs")
    base.add_argument("--rebuild", action="store_true", help="build it again from scratch")
    up = sub.add_parser("up", help="boot a lab and write its inventory")
    up.add_argument("--lab", required=True, help="lab name")
    up.add_argument("--host", action="append", required=True, metavar="HOST[:group,group]")
    up.add_argument("--state-dir", help="where to write inventory, instance config, SSH key")
    down = sub.add_parser("down", help="stop a lab and remove everything of it")
    which = down.add_mutually_exclusive_group(required=True)
    which.add_argument("--lab", help="lab name")
    which.add_argument("--all", action="store_true", help="every lab")
    kill = sub.add_parser("kill", help="pull the plug on hosts (SIGKILL, no shutdown)")
    kill.add_argument("--lab", required=True, help="lab name")
    kill.add_argument("--host", action="append", required=True, metavar="HOST")
    boot = sub.add_parser("boot", help="boot stopped hosts again (all when none named)")
    boot.add_argument("--lab", required=True, help="lab name")
    boot.add_argument("--host", action="append", default=[], metavar="HOST")
    sub.add_parser("list", help="labs, hosts, addresses and state")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `labctl.py list | head` ends quietly
    try:
        if args.command == "base":
            build_base(rebuild=args.rebuild)
        elif args.command == "up":
            cmd_up(args.lab, args.host, args.state_dir)
        elif args.command == "down":
            cmd_down(args.lab, args.all)
        elif args.command == "kill":
            cmd_kill(args.lab, args.host)
        elif args.command == "boot":
            cmd_boot(args.lab, args.host)
        else:
            cmd_list()
    except LabError as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
