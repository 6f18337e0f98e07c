# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Pin schema registry instances to a release, restart them and wait until they serve it.

Behind the module llmops.registry.instance_switch. It runs on the registry host with the
standard library and ansible.module_utils (its urls Request for the readiness probe). Everything
that can be checked is checked before the first write, so bad input raises SwitchError
with every env file and unit untouched.

systemctl and the HTTP probe are plain callables so the unit tests can stand in for
systemd (which does not run on the build machine); the Molecule scenario runs the real
ones.
"""

from __future__ import annotations

import functools
import grp
import json
import os
import pwd
import re
import ssl
import subprocess
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

from ansible.module_utils.urls import Request
from ansible_collections.llmops.registry.plugins.module_utils.atomic_file import write_atomically
from ansible_collections.llmops.registry.plugins.module_utils.release_actions import (
    perform_rollback,
)
from ansible_collections.llmops.registry.plugins.module_utils.releases import (
    METADATA_FILE,
    UNFINISHED_MARKER,
    ReleaseError,
    validate_version,
)

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
RELEASE_KEY = "SCHEMA_REGISTRY_RELEASE"
SYSTEMCTL = "/usr/bin/systemctl"

# probe(url, timeout) -> (HTTP status or None when nothing answered, body text).
# Optional, not "int | None": this alias is evaluated at import, and ansible-test's pylint
# reads target code as Python 3.8.
Probe = Callable[[str, float], tuple[Optional[int], str]]  # noqa: UP045
# restart(units) restarts them all in one call; raises SwitchError when it fails.
Restart = Callable[[list[str]], None]


class SwitchError(ReleaseError):
    """An instance could not be pinned, restarted or did not serve the release.

    ``result`` holds what was done before the failure (None when nothing was)."""

    result: dict[str, Any] | None = None


@dataclass
class Instance:
    name: str
    port: int
    env: str
    env_file: str
    unit: str
    before: str | None = None
    env_changed: bool = False
    served_before: str | None = None
    restarted: bool = False
    restart_seconds: float | None = None
    ready_seconds: float | None = None
    polls: int = 0
    last_seen: str = "nothing yet"

    def result(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "unit": self.unit,
            "env_file": self.env_file,
            "env_changed": self.env_changed,
            "served_before": self.served_before,
            "restarted": self.restarted,
            "restart_seconds": self.restart_seconds,
            "ready_seconds": self.ready_seconds,
            "polls": self.polls,
        }


def systemctl_restart(units: list[str]) -> None:
    """One `systemctl restart` for all units: systemd stops and starts them together."""
    proc = subprocess.run(  # noqa: S603 - fixed binary, unit names checked against NAME_RE
        [SYSTEMCTL, "restart", *units], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SwitchError(
            f"systemctl restart {' '.join(units)} failed (rc {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()}"
        )


@functools.cache
def _probe_request() -> Request:
    """ansible's open_url, set up once: no proxy (the instance is on this host or at the
    address the role gives) and one TLS context for every poll; open_url makes a new one
    per call, reading the CA store each time (40 times the cost of a loopback request)."""
    return Request(use_proxy=False, context=ssl.create_default_context())


def http_probe(url: str, timeout: float) -> tuple[int | None, str]:
    """GET url; (status, body) for any HTTP answer, (None, reason) when none came."""
    try:
        with _probe_request().open("GET", url, timeout=timeout) as response:
            return response.status, response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(4096).decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"no answer ({reason})"


def _served_version(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    version = data.get("version") if isinstance(data, dict) else None
    return version if isinstance(version, str) else None


def release_of(env: str) -> str:
    """The release folder an env file pins (its SCHEMA_REGISTRY_RELEASE line)."""
    for line in env.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key == RELEASE_KEY:
            return value.strip()
    raise SwitchError(f"the env text has no {RELEASE_KEY}=<release folder> line")


def _check_release(env: str, version: str, name: str) -> None:
    try:
        folder = release_of(env)
    except SwitchError as exc:
        raise SwitchError(f"instance {name}: {exc}") from None
    if os.path.basename(folder.rstrip("/")) != version:
        raise SwitchError(f"instance {name}: the env text pins {folder}, not release {version}")
    if not os.path.isdir(folder):
        raise SwitchError(f"instance {name}: release folder {folder} does not exist")
    if os.path.lexists(os.path.join(folder, UNFINISHED_MARKER)) or not os.path.isfile(
        os.path.join(folder, METADATA_FILE)
    ):
        raise SwitchError(
            f"instance {name}: release {folder} is unfinished (an interrupted install);"
            " refusing to run it"
        )


def _ids(owner: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise SwitchError(f"owner {owner!r} does not exist on this host") from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise SwitchError(f"group {group!r} does not exist on this host") from None
    return uid, gid


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _attributes_differ(path: str, uid: int, gid: int, mode: int) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, mode)


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}/ready"


def _wait_ready(
    pending: list[Instance],
    *,
    version: str,
    host: str,
    started: float,
    timeout: float,
    interval: float,
    probe: Probe,
) -> None:
    """Poll /ready of every pending instance until each answers 200 with the version."""
    deadline = started + timeout
    waiting = list(pending)
    while waiting:
        for inst in list(waiting):
            remaining = max(deadline - time.monotonic(), 0.05)
            status, body = probe(_url(host, inst.port), min(1.0, remaining))
            inst.polls += 1
            served = _served_version(body) if status is not None else None
            if status is None:
                inst.last_seen = body
            else:
                inst.last_seen = f"HTTP {status} {body.strip()[:300]}"
            if status == 200 and served == version:
                inst.ready_seconds = round(time.monotonic() - started, 3)
                waiting.remove(inst)
        if not waiting:
            return
        if time.monotonic() >= deadline:
            late = waiting[0]
            raise SwitchError(
                f"{late.unit} (port {late.port}) did not serve release {version} on /ready"
                f" within {timeout:g} s; last saw: {late.last_seen}"
            )
        time.sleep(interval)


def _planned(
    instances: list[dict[str, Any]], version: str, config_dir: str, unit_template: str
) -> list[Instance]:
    """Every instance checked and resolved to its env file and unit; nothing written."""
    try:
        validate_version(version)
    except ReleaseError as exc:
        raise SwitchError(str(exc)) from None
    if not instances:
        raise SwitchError("instances is empty: name at least one {name, port, env}")
    if "{name}" not in unit_template:
        raise SwitchError(f"unit_template {unit_template!r} must contain {{name}}")
    if not os.path.isdir(config_dir):
        raise SwitchError(f"config_dir {config_dir} does not exist")
    planned: list[Instance] = []
    for item in instances:
        name, port, env = item.get("name"), item.get("port"), item.get("env")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise SwitchError(f"invalid instance name {name!r}: letters, digits, - and _ only")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise SwitchError(f"instance {name}: invalid port {port!r}")
        if not isinstance(env, str) or not env.strip():
            raise SwitchError(f"instance {name}: env (the env file's text) is empty")
        _check_release(env, version, name)
        planned.append(
            Instance(
                name=name,
                port=port,
                env=env if env.endswith("\n") else env + "\n",
                env_file=os.path.join(config_dir, f"instance-{name}.env"),
                unit=unit_template.format(name=name),
            )
        )
    for attr in ("name", "port"):
        values = [getattr(i, attr) for i in planned]
        if len(set(values)) != len(values):
            raise SwitchError(f"two instances share a {attr}: {values}")
    return planned


def switch_instances(
    *,
    instances: list[dict[str, Any]],
    version: str,
    config_dir: str,
    owner: str = "root",
    group: str = "root",
    mode: int = 0o640,
    unit_template: str = "schema-registry@{name}.service",
    parallel: bool = True,
    timeout: float = 90.0,
    interval: float = 0.1,
    host: str = "127.0.0.1",
    check_mode: bool = False,
    restart: Restart = systemctl_restart,
    probe: Probe = http_probe,
) -> dict[str, Any]:
    """Pin, restart (only what needs it) and wait; returns the module's result."""
    if timeout <= 0 or interval <= 0:
        raise SwitchError(f"timeout and interval must be positive (got {timeout}, {interval})")
    planned = _planned(instances, version, config_dir, unit_template)
    uid, gid = _ids(owner, group)

    # What each instance needs: a new env file, a restart, or nothing.
    attributes_changed = False
    for inst in planned:
        inst.before = _read(inst.env_file)
        inst.env_changed = inst.before != inst.env
        differ = _attributes_differ(inst.env_file, uid, gid, mode)
        attributes_changed = attributes_changed or inst.env_changed or differ
        status, body = probe(_url(host, inst.port), 1.0)
        inst.served_before = _served_version(body) if status is not None else None
    to_restart = [i for i in planned if i.env_changed or i.served_before != version]
    diffs = [
        {
            "before": inst.before or "",
            "after": inst.env,
            "before_header": f"{inst.env_file} (before)",
            "after_header": f"{inst.env_file} (after)",
        }
        for inst in planned
        if inst.env_changed
    ]
    changed = bool(to_restart) or attributes_changed
    if check_mode:
        for inst in to_restart:
            inst.restarted = True
        return _result(changed, planned, version, diffs, 0.0)

    begin = time.monotonic()
    for inst in planned:
        if inst.env_changed:
            write_atomically(
                inst.env_file,
                inst.env,
                mode=mode,
                owner=(uid, gid),
                prefix=".instance-",
                suffix=".tmp",
            )
        elif _attributes_differ(inst.env_file, uid, gid, mode):
            os.chown(inst.env_file, uid, gid)
            os.chmod(inst.env_file, mode)
    waits = dict(version=version, host=host, timeout=timeout, interval=interval, probe=probe)
    try:
        unchanged = [i for i in planned if i not in to_restart]
        if unchanged:
            # Already on the release: not restarted, but it must still be ready.
            _wait_ready(unchanged, started=time.monotonic(), **waits)
        batches = [to_restart] if parallel else [[i] for i in to_restart]
        for batch in filter(None, batches):
            started = time.monotonic()
            restart([i.unit for i in batch])
            for inst in batch:
                inst.restarted = True
                inst.restart_seconds = round(time.monotonic() - started, 3)
            _wait_ready(batch, started=started, **waits)
    except SwitchError as exc:
        # What was done before the failure, for the module's failure result.
        exc.result = _result(True, planned, version, diffs, time.monotonic() - begin)
        raise
    return _result(changed, planned, version, diffs, time.monotonic() - begin)


def switch_host(
    *, point_current: str | None = None, lock_timeout: float = 60.0, **switch: Any
) -> dict[str, Any]:
    """switch_instances, then (with point_current) the release tree's `current` pointed at
    the release once every instance serves it, exactly as the rollback module does it:
    one round trip less for a whole-host rollback. The tree is checked before anything
    is written, so a refused rollback (unknown or unfinished release) changes nothing."""
    if point_current is None:
        return switch_instances(**switch)
    check_mode = bool(switch.get("check_mode"))
    version = switch["version"]
    planned = perform_rollback(
        path=point_current, version=version, lock_timeout=lock_timeout, check_mode=True
    )
    result = switch_instances(**switch)
    if check_mode or not planned["changed"]:
        current = planned
    else:
        current = perform_rollback(path=point_current, version=version, lock_timeout=lock_timeout)
    diff = current.pop("diff")
    if current["changed"]:
        result["diff"].append(diff)
    result["changed"] = result["changed"] or current["changed"]
    result["current"] = current
    return result


def _result(
    changed: bool, planned: list[Instance], version: str, diffs: list[dict], seconds: float
) -> dict[str, Any]:
    return {
        "changed": changed,
        "version": version,
        "restarted": [i.name for i in planned if i.restarted],
        "instances": [i.result() for i in planned],
        "seconds": round(seconds, 3),
        "diff": diffs,
    }
