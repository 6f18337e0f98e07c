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
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import labpaths
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
from labimage import (
    BASE_PACKAGES,
    BASE_STAMP,
    BASE_VERSION,
    MIRROR,
    SECURITY_MIRROR,
    USER_SESSIONS_RETRY,
    base_ids,
    base_version,
    build_base,
    build_machine_resolver,
    chroot,
    collect_debs,
    configure_base,
    ensure_apt_cache,
    link_debs,
    seed_upper,
)
from labnet import (
    INOTIFY_LIMITS,
    IPT_COMMENT_PREFIX,
    clear_host_veth,
    enable_forwarding,
    iptables,
    iptables_rules,
    link_exists,
    orphan_rule_owner,
    raise_inotify_limits,
    restore_forwarding,
    setup_network,
    taken_networks,
    teardown_network,
)
from labpaths import (
    APT_CACHE_DIR,
    APT_POOL_DIR,
    BASE_DIR,
    DEBOOTSTRAP_CACHE,
    FORWARD_SAVED,
    LAB_ROOT,
    LABS_DIR,
    LOCK_DIR,
    RUN_DIR,
)
from labproc import (
    STOP_TIMEOUT,
    Proc,
    descendants,
    host_alive,
    identify,
    nspawn_command,
    nspawn_processes,
    parse_start_time,
    pid_parent,
    process_start_time,
    send_signal,
    start_host,
    still_running,
    stop_hosts,
    wait_gone,
)
from labssh import (
    INSIDE_COMMANDS,
    KEY_NAME,
    SSH_PROBE_TIMEOUT,
    SSH_TIMEOUT,
    ensure_key,
    inside_view,
    ssh_command,
    ssh_probe,
    ssh_ready,
    wait_for_ssh,
)
from labstate import (
    STATE_FILES,
    all_states,
    lab_run_dir,
    load_state,
    new_state,
    running_labs,
    save_state,
    specs_of,
    write_state_files,
)
from labsys import locked, log, remove_tree, require_root, run, tail, unmount_below

# What callers and tests reach as labctl.<name>: the helpers moved to the modules above.
__all__ = [
    "APT_CACHE_DIR",
    "APT_POOL_DIR",
    "BASE_DIR",
    "BASE_PACKAGES",
    "BASE_STAMP",
    "BASE_VERSION",
    "DEBOOTSTRAP_CACHE",
    "FORWARD_SAVED",
    "INOTIFY_LIMITS",
    "INSIDE_COMMANDS",
    "IPT_COMMENT_PREFIX",
    "KEY_NAME",
    "LABS_DIR",
    "LAB_ROOT",
    "LAB_USER",
    "LOCK_DIR",
    "MIRROR",
    "RUN_DIR",
    "SECURITY_MIRROR",
    "SSH_PROBE_TIMEOUT",
    "SSH_TIMEOUT",
    "STATE_FILES",
    "STOP_TIMEOUT",
    "USER_SESSIONS_RETRY",
    "HostSpec",
    "LabError",
    "Proc",
    "all_states",
    "allocate_index",
    "base_ids",
    "base_version",
    "bridge_mac",
    "bridge_name",
    "build_base",
    "build_machine_resolver",
    "chroot",
    "clear_host_veth",
    "collect_debs",
    "configure_base",
    "descendants",
    "enable_forwarding",
    "ensure_apt_cache",
    "ensure_key",
    "gateway_address",
    "host_addresses",
    "host_alive",
    "identify",
    "inside_view",
    "iptables",
    "iptables_rules",
    "lab_network",
    "lab_run_dir",
    "link_debs",
    "link_exists",
    "load_state",
    "locked",
    "log",
    "new_state",
    "nspawn_command",
    "nspawn_processes",
    "orphan_rule_owner",
    "parse_host_specs",
    "parse_start_time",
    "pid_parent",
    "process_start_time",
    "raise_inotify_limits",
    "remove_tree",
    "render_etc_hosts",
    "render_instance_config",
    "render_inventory",
    "render_network_unit",
    "require_root",
    "restore_forwarding",
    "run",
    "running_labs",
    "save_state",
    "seed_upper",
    "send_signal",
    "setup_network",
    "specs_of",
    "ssh_command",
    "ssh_probe",
    "ssh_ready",
    "start_host",
    "still_running",
    "stop_hosts",
    "tail",
    "taken_networks",
    "teardown_network",
    "unmount_below",
    "usable_resolv_conf",
    "validate_lab_name",
    "wait_for_ssh",
    "wait_gone",
    "write_state_files",
]


def cmd_up(lab: str, host_args: list[str], state_dir_arg: str | None) -> None:
    validate_lab_name(lab)
    specs = parse_host_specs(host_args)
    require_root()
    state_dir = Path(state_dir_arg).resolve() if state_dir_arg else labpaths.LABS_DIR / lab
    build_base(rebuild=False)
    if base_version() is None:
        raise LabError(f"no base rootfs in {labpaths.BASE_DIR}: run `labctl.py base`")
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
    if state_dir.parent == labpaths.LABS_DIR:
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
        if labpaths.RUN_DIR.is_dir():
            for entry in labpaths.RUN_DIR.iterdir():
                if entry.name not in labs:
                    log(f"removing orphaned run dir {entry}")
                    remove_tree(entry)
        if not states:
            restore_forwarding()


def select_hosts(state: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    known = {host["name"]: host for host in state["hosts"]}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise LabError(
            f"lab {state['lab']} has no host {', '.join(unknown)} (its hosts: {', '.join(known)})"
        )
    return [known[name] for name in names] if names else list(known.values())


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
