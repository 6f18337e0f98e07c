"""The base rootfs all hosts share (debootstrap + configure) and what each host's
overlay and apt cache start with.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import labpaths
from labcore import (
    LAB_USER,
    HostSpec,
    LabError,
    render_etc_hosts,
    render_network_unit,
    usable_resolv_conf,
)
from labstate import running_labs
from labsys import locked, log, remove_tree, require_root, run

BASE_STAMP = ".llmops-lab-base"  # written last: a base without it is unfinished
# Bump when configure_base() changes: `up` then rebuilds an older base if no lab uses it.
BASE_VERSION = 2
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
USER_SESSIONS_RETRY = "[Service]\nRestart=on-failure\nRestartSec=1\n"


def base_version() -> int | None:
    """Version of the finished base rootfs, None when there is none."""
    try:
        return int(json.loads((labpaths.BASE_DIR / BASE_STAMP).read_text()).get("version", 1))
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
        staging = labpaths.LAB_ROOT / "base-bookworm.building"
        remove_tree(staging)  # an earlier build that was cut short
        labpaths.DEBOOTSTRAP_CACHE.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log(f"building base rootfs in {labpaths.BASE_DIR} (about a minute)")
        try:
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    f"--cache-dir={labpaths.DEBOOTSTRAP_CACHE}",
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
            remove_tree(labpaths.BASE_DIR)
            staging.rename(labpaths.BASE_DIR)
        log(f"base rootfs ready in {time.monotonic() - started:.0f} s")


def base_ids(name: str) -> tuple[int, int]:
    """uid and gid of a user inside the base image."""
    for line in (labpaths.BASE_DIR / "etc/passwd").read_text().splitlines():
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
    link_debs(labpaths.APT_POOL_DIR, cache / "archives")


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
        link_debs(Path(host["apt_cache"]) / "archives", labpaths.APT_POOL_DIR)
