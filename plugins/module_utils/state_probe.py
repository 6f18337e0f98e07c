# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Read-only look at a host: which packages, paths and units are already as wanted.

Used by llmops.registry.state_probe. A role asks once, at its start, and skips the task
of every resource the answer proves in place; a resource that is not proven (missing,
different, unreadable, not asked about) keeps its task, so a wrong or missing probe entry
can only cost time, never a change left undone.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
from collections.abc import Callable, Iterable

# (argv) -> (rc, stdout, stderr), as AnsibleModule.run_command returns it
Runner = Callable[[list[str]], tuple[int, str, str]]

PATH_STATES = ("file", "directory", "link", "absent")


class ProbeError(ValueError):
    """A probe entry that cannot be checked as written (a bug in the caller)."""


CHECKSUM_ALGORITHMS = ("sha1", "sha256")


def checksum_of(path: str, algorithm: str = "sha1") -> str:
    # sha1: the checksum ansible's copy and template compare
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def missing_packages(packages: list[str], run: Runner) -> list[str]:
    """The packages dpkg does not report as installed (state letter 'i')."""
    if not packages:
        return []
    argv = ["dpkg-query", "--show", "--showformat=${Package} ${db:Status-Abbrev}\\n", *packages]
    rc, out, err = run(argv)
    # rc 1: dpkg has never heard of one of them, which is "not installed" too
    if rc not in (0, 1):
        raise ProbeError(f"dpkg-query failed ({rc}): {err.strip()}")
    installed = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 2 and len(fields[1]) >= 2 and fields[1][1] == "i":
            installed.add(fields[0])
    return [name for name in packages if name not in installed]


def _wanted_mode(entry: dict) -> int | None:
    mode = entry.get("mode")
    if mode is None:
        return None
    text = str(mode)
    if not text or any(ch not in "01234567" for ch in text):
        raise ProbeError(f"{entry['path']}: mode {text!r} is not an octal number such as '0640'")
    return int(text, 8)


def _id_matches(wanted: str | None, actual: int, number_of: Callable[[str], int]) -> bool:
    """Owner or group: not compared when not wanted; a name or a number."""
    if wanted is None:
        return True
    if str(wanted).isdigit():
        return int(wanted) == actual
    try:
        return number_of(str(wanted)) == actual
    except KeyError:
        return False  # the user or group does not exist yet: its task comes later


def check_entry(entry: dict) -> str:
    """Reject an entry that cannot be checked as written; its state."""
    path = entry.get("path")
    if not path:
        raise ProbeError(f"path entry without a path: {entry!r}")
    state = entry.get("state") or "file"
    if state not in PATH_STATES:
        raise ProbeError(f"{path}: state {state!r} is not one of {', '.join(PATH_STATES)}")
    if state == "link" and not entry.get("src"):
        raise ProbeError(f"{path}: a link entry needs src")
    if state == "file" and not entry.get("checksum"):
        raise ProbeError(f"{path}: a file entry needs the checksum (sha1) of the wanted content")
    if _algorithm(entry) not in CHECKSUM_ALGORITHMS:
        raise ProbeError(
            f"{path}: checksum_algorithm must be one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    _wanted_mode(entry)
    return state


def _algorithm(entry: dict) -> str:
    return entry.get("checksum_algorithm") or "sha1"


def _attributes_match(entry: dict, info: os.stat_result) -> bool:
    mode = _wanted_mode(entry)
    return (
        (mode is None or stat.S_IMODE(info.st_mode) == mode)
        and _id_matches(entry.get("owner"), info.st_uid, lambda name: pwd.getpwnam(name).pw_uid)
        and _id_matches(entry.get("group"), info.st_gid, lambda name: grp.getgrnam(name).gr_gid)
    )


def _content_matches(entry: dict) -> bool:
    try:
        return checksum_of(entry["path"], _algorithm(entry)) == entry["checksum"].lower()
    except OSError:
        return False


def path_in_place(entry: dict) -> bool:
    """True when the path is exactly as the entry wants it."""
    state = check_entry(entry)
    path = entry["path"]
    if state == "absent":
        return not os.path.lexists(path)
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if state == "link":
        return stat.S_ISLNK(info.st_mode) and os.readlink(path) == entry["src"]
    kind_ok = stat.S_ISDIR(info.st_mode) if state == "directory" else stat.S_ISREG(info.st_mode)
    if not (kind_ok and _attributes_match(entry, info)):
        return False
    return state == "directory" or _content_matches(entry)


def unit_states(units: list[str], run: Runner) -> dict[str, tuple[str, str]]:
    """Each unit's (unit file state, active state), from one `systemctl show`."""
    if not units:
        return {}
    argv = ["systemctl", "show", "--property=Id,UnitFileState,ActiveState", "--", *units]
    rc, out, err = run(argv)
    if rc != 0:
        raise ProbeError(f"systemctl show failed ({rc}): {err.strip()}")
    # One block per unit, in the order asked, separated by blank lines.
    blocks = out.strip().split("\n\n")
    if len(blocks) != len(units):
        return {}  # not the answer we know how to read: nothing proven
    states = {}
    for unit, block in zip(units, blocks, strict=True):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[unit] = (props.get("UnitFileState", ""), props.get("ActiveState", ""))
    return states


def probe(
    packages: Iterable[str],
    paths: Iterable[dict],
    units: Iterable[str],
    run: Runner,
    enabled_units: Iterable[str] = (),
) -> dict:
    """What is in place. `units` must be enabled and active, `enabled_units` enabled.
    A host that lacks a package is being (re)installed: then no path or unit counts as
    in place, since the install may replace files and units."""
    paths = list(paths)
    for entry in paths:
        check_entry(entry)
    running = list(dict.fromkeys(units))
    enabled = [unit for unit in dict.fromkeys(enabled_units) if unit not in running]
    asked = [entry["path"] for entry in paths] + running + enabled
    missing = missing_packages(list(packages), run)
    in_place: list[str] = []
    if not missing:
        in_place += [entry["path"] for entry in paths if path_in_place(entry)]
        states = unit_states(running + enabled, run)
        in_place += [u for u in running if states.get(u) == ("enabled", "active")]
        in_place += [u for u in enabled if states.get(u, ("",))[0] == "enabled"]
    return {
        "missing_packages": missing,
        "in_place": in_place,
        "not_in_place": [name for name in asked if name not in in_place],
    }
