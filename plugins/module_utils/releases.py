# Copyright: llmops maintainers
# Apache License 2.0 (see LICENSE)
"""Release tree of the schema registry on one host.

Layout under ``path`` (default /opt/schema-registry)::

    releases/<version>/            one folder per release
    releases/<version>/.unfinished present until the release is complete
    releases/<version>/release.json metadata (version, checksum, installed_at, ...)
    current -> releases/<version>  the active release (a relative symlink)
    history.json                   versions in the order they became active
    .lock                          flock so two runs on one host never overlap

The active release is always the real target of ``current`` (never an mtime).
Switching writes a temporary link and renames it over ``current`` (atomic).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ansible_collections.llmops.registry.plugins.module_utils.atomic_file import (
    fsync_folder,
    write_atomically,
)

RELEASES_DIR = "releases"
CURRENT_LINK = "current"
HISTORY_FILE = "history.json"
LOCK_FILE = ".lock"
UNFINISHED_MARKER = ".unfinished"
METADATA_FILE = "release.json"
PACKAGE_NAME = "schema-registry"
HISTORY_LENGTH = 50

# Options of the modules on a release tree (release, rollback, release_lock), documented
# once in plugins/doc_fragments/release_tree.py.
RELEASE_TREE_ARGS: dict[str, dict[str, Any]] = {
    "path": {"type": "path", "default": "/opt/schema-registry"},
}
LOCK_ARGS: dict[str, dict[str, Any]] = {"lock_timeout": {"type": "float", "default": 0}}

# Semantic version (https://semver.org) without build metadata; no path characters.
VERSION_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?$"
)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class ReleaseError(Exception):
    """A problem the user must fix; nothing was changed when it is raised."""


class LockHeldError(ReleaseError):
    """Another release or rollback holds the lock of this release tree."""


StepHook = Callable[[str], None]


def _no_hook(_step: str) -> None:
    return None


# --------------------------------------------------------------------------- input


def validate_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise ReleaseError(
            f"invalid version string {version!r}: expected a semantic version such as 1.2.3"
        )
    return version


def normalise_checksum(checksum: str) -> str:
    value = checksum.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    # A .sha256 file written by sha256sum reads "<hex>  <file name>".
    value = value.split()[0] if value else value
    if not SHA256_RE.match(value):
        raise ReleaseError(f"invalid checksum {checksum!r}: expected 64 hex digits of sha256")
    return value


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_user() -> str:
    for name in ("SUDO_USER", "LOGNAME", "USER"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


# --------------------------------------------------------------------------- tree


class ReleaseTree:
    """Read and change the release tree rooted at ``path``."""

    def __init__(self, path: str) -> None:
        if not os.path.isabs(path):
            raise ReleaseError(f"path must be absolute, got {path!r}")
        self.path = os.path.normpath(path)
        self.releases_dir = os.path.join(self.path, RELEASES_DIR)
        self.current_link = os.path.join(self.path, CURRENT_LINK)
        self.history_file = os.path.join(self.path, HISTORY_FILE)
        self.lock_file = os.path.join(self.path, LOCK_FILE)

    # ---- reading

    def release_dir(self, version: str) -> str:
        return os.path.join(self.releases_dir, validate_version(version))

    def exists(self, version: str) -> bool:
        return os.path.isdir(self.release_dir(version))

    def is_complete(self, version: str) -> bool:
        folder = self.release_dir(version)
        return (
            os.path.isdir(folder)
            and not os.path.lexists(os.path.join(folder, UNFINISHED_MARKER))
            and os.path.isfile(os.path.join(folder, METADATA_FILE))
        )

    def metadata(self, version: str) -> dict[str, Any]:
        with open(os.path.join(self.release_dir(version), METADATA_FILE), encoding="utf-8") as f:
            return json.load(f)

    def active(self) -> str | None:
        """Version the real target of ``current`` names, or None without a valid link."""
        if not os.path.islink(self.current_link):
            if os.path.lexists(self.current_link):
                raise ReleaseError(f"{self.current_link} exists but is not a symlink")
            return None
        target = os.path.realpath(self.current_link)
        if os.path.dirname(target) != os.path.realpath(self.releases_dir):
            raise ReleaseError(
                f"{self.current_link} points to {target}, outside {self.releases_dir}"
            )
        version = os.path.basename(target)
        if not VERSION_RE.match(version) or not os.path.isdir(target):
            raise ReleaseError(f"{self.current_link} points to {target}, not a release")
        return version

    def versions(self) -> list[str]:
        """Every folder under releases/ whose name is a version (complete or not)."""
        if not os.path.isdir(self.releases_dir):
            return []
        return sorted(
            name
            for name in os.listdir(self.releases_dir)
            if VERSION_RE.match(name) and os.path.isdir(os.path.join(self.releases_dir, name))
        )

    def complete_versions(self) -> list[str]:
        """Complete releases, oldest install first (by recorded installed_at, never mtime)."""
        found = []
        for version in self.versions():
            if self.is_complete(version):
                try:
                    installed_at = str(self.metadata(version).get("installed_at", ""))
                except (OSError, ValueError):
                    continue
                found.append((installed_at, version))
        return [version for _unused, version in sorted(found)]

    def unfinished_versions(self) -> list[str]:
        return [v for v in self.versions() if not self.is_complete(v)]

    def history(self) -> list[str]:
        try:
            with open(self.history_file, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ReleaseError(f"{self.history_file} is not valid JSON: {exc}") from exc
        versions = data.get("activations", []) if isinstance(data, dict) else []
        return [v for v in versions if isinstance(v, str) and VERSION_RE.match(v)]

    def rolled_back_from(self) -> str | None:
        """Release the last rollback left (the roll-forward candidate), until a release
        switches ``current`` again. Never pruned meanwhile."""
        try:
            with open(self.history_file, encoding="utf-8") as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        value = data.get("rolled_back_from") if isinstance(data, dict) else None
        return value if isinstance(value, str) and VERSION_RE.match(value) else None

    def previous(self, active: str | None = None) -> str | None:
        """Release active before the current one: the newest history entry other than the
        active version that is still a complete release. Falls back to the active
        release's recorded ``previous``."""
        active = self.active() if active is None else active
        for version in reversed(self.history()):
            if version != active and self.is_complete(version):
                return version
        if active and self.is_complete(active):
            recorded = self.metadata(active).get("previous")
            if (
                isinstance(recorded, str)
                and recorded != active
                and VERSION_RE.match(recorded)
                and self.is_complete(recorded)
            ):
                return recorded
        return None

    def state(self) -> dict[str, Any]:
        """Summary used for results and diffs."""
        active = self.active()
        return {
            "active": active,
            "previous": self.previous(active),
            "releases": self.complete_versions(),
            "unfinished": self.unfinished_versions(),
        }

    def diff_view(self) -> str:
        state = self.state()
        current = f"{RELEASES_DIR}/{state['active']}" if state["active"] else "(none)"
        lines = [f"current -> {current}", "releases:"]
        lines += [f"  - {v}" for v in state["releases"]]
        lines += [f"  - {v} (unfinished)" for v in state["unfinished"]]
        return "\n".join(lines) + "\n"

    # ---- locking

    @contextlib.contextmanager
    def lock(self, timeout: float = 0.0, create: bool = True) -> Iterator[None]:
        """Hold an exclusive flock on the tree's lock file for the duration.

        With create=False (check mode) a missing lock file is not created, and an
        existing one is only tested so a held lock is still reported."""
        if not create and not os.path.exists(self.lock_file):
            yield
            return
        if create:
            os.makedirs(self.path, mode=0o755, exist_ok=True)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(self.lock_file, flags, 0o600)
        try:
            deadline = time.monotonic() + max(timeout, 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise LockHeldError(
                            f"another release or rollback holds the lock {self.lock_file};"
                            " wait for it to finish (nothing was changed)"
                        ) from exc
                    time.sleep(0.2)
            yield
        finally:
            os.close(fd)

    # ---- changing

    def _write_json(self, target: str, data: Any) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomically(target, text, mode=0o644, sync_folder=True)

    def switch(self, version: str, record: bool = True) -> None:
        """Point ``current`` at a complete release: temporary link, then rename."""
        if not self.is_complete(version):
            raise ReleaseError(f"release {version} is not complete; refusing to switch to it")
        tmp = os.path.join(self.path, f".{CURRENT_LINK}.tmp-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.path.join(RELEASES_DIR, version), tmp)
        os.replace(tmp, self.current_link)
        fsync_folder(self.path)
        if record:
            self.record_activation(version)

    def record_activation(self, version: str, rolled_back_from: str | None = None) -> None:
        history = self.history()
        if not history or history[-1] != version:
            history.append(version)
        self._write_history(history[-HISTORY_LENGTH:], rolled_back_from)

    def truncate_history_to(self, version: str, rolled_back_from: str | None = None) -> None:
        """After a rollback to the previous release, forget what came after it."""
        history = self.history()
        if version in history:
            index = len(history) - 1 - history[::-1].index(version)
            history = history[: index + 1]
        else:
            history.append(version)
        self._write_history(history, rolled_back_from)

    def _write_history(self, history: list[str], rolled_back_from: str | None = None) -> None:
        data: dict[str, Any] = {"activations": history}
        if rolled_back_from:
            data["rolled_back_from"] = rolled_back_from
        self._write_json(self.history_file, data)

    def remove_stale_temporaries(self) -> None:
        """Leftovers of an interrupted switch or install (never ``current``, never a
        release folder). The caller holds the lock, so nothing else is writing them."""
        if os.path.isdir(self.releases_dir):
            for name in os.listdir(self.releases_dir):
                full = os.path.join(self.releases_dir, name)
                if name.startswith(".") and os.path.isdir(full) and not os.path.islink(full):
                    shutil.rmtree(full)
        if not os.path.isdir(self.path):
            return
        for name in os.listdir(self.path):
            if name.startswith(f".{CURRENT_LINK}.tmp-") or name.startswith(".tmp-"):
                full = os.path.join(self.path, name)
                if os.path.islink(full) or os.path.isfile(full):
                    os.unlink(full)

    def is_rolled_back(self, version: str) -> bool:
        try:
            return bool(self.metadata(version).get("rolled_back_at"))
        except (OSError, ValueError):
            return False

    def set_rolled_back(self, version: str, value: str | None) -> None:
        """Mark (or clear) a release that was rolled back from: it keeps no slot."""
        path = os.path.join(self.release_dir(version), METADATA_FILE)
        data = self.metadata(version)
        if value is None:
            if "rolled_back_at" not in data:
                return
            data.pop("rolled_back_at")
        else:
            data["rolled_back_at"] = value
        self._write_json(path, data)

    def plan_prune(self, keep: int, keep_always: set[str], adding: str | None = None) -> list[str]:
        """Releases prune() deletes: every unfinished one, then the oldest complete ones
        beyond ``keep``. Rolled-back (failed) releases go first and take no slot.
        Nothing in ``keep_always`` is ever selected. ``adding`` counts a release about
        to be installed (check mode)."""
        doomed = [v for v in self.unfinished_versions() if v not in keep_always | {adding}]
        complete = self.complete_versions()
        if adding and adding not in complete:
            complete.append(adding)
        failed = [v for v in complete if v not in keep_always and self.is_rolled_back(v)]
        good = [v for v in complete if v not in failed]
        doomed += failed
        candidates = [v for v in good if v not in keep_always]
        excess = len(good) - keep
        return doomed + candidates[: max(excess, 0)]

    def keep_always(self, active: str | None = None) -> set[str]:
        """Never pruned: the active and previous releases and the one the last rollback
        left (a deploy after a rollback must not delete the roll-forward candidate)."""
        active = self.active() if active is None else active
        return {v for v in (active, self.previous(active), self.rolled_back_from()) if v}

    def prune(self, keep: int, protect: set[str]) -> list[str]:
        """Delete what plan_prune selects, never the active, previous or rolled-back-from
        release."""
        keep_always = self.keep_always() | protect
        doomed = self.plan_prune(keep, keep_always)
        for version in doomed:
            # Rename first (atomic) so an interrupted delete never leaves a half-removed
            # folder that still looks like a complete release; dot folders are swept.
            trash = os.path.join(self.releases_dir, f".prune-{version}-{os.getpid()}")
            os.rename(self.release_dir(version), trash)
            shutil.rmtree(trash)
        return doomed


# --------------------------------------------------------------------------- install


def _member_relpath(member: tarfile.TarInfo, top: str) -> str | None:
    """Path of a tar member below the artifact's single top folder, or None for the
    top folder itself. Raises on anything that could escape the release folder."""
    name = member.name
    if name.startswith("./"):
        name = name[2:]
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or parts[0] != top:
        raise ReleaseError(f"artifact member {member.name!r} is outside the folder {top}/")
    if os.path.isabs(member.name) or ".." in parts:
        raise ReleaseError(f"artifact member {member.name!r} has an unsafe path")
    if not (member.isfile() or member.isdir()):
        raise ReleaseError(f"artifact member {member.name!r} is not a plain file or folder")
    rest = parts[1:]
    return "/".join(rest) if rest else None


def inspect_artifact(artifact: str, version: str) -> list[tuple[tarfile.TarInfo, str | None]]:
    """Read the tarball's listing and check it is a safe artifact of ``version``."""
    top = f"{PACKAGE_NAME}-{version}"
    try:
        with tarfile.open(artifact, "r:gz") as tar:
            members = [(m, _member_relpath(m, top)) for m in tar.getmembers()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ReleaseError(f"artifact {artifact} is not a readable .tar.gz: {exc}") from exc
    names = {rel for _unused, rel in members}
    for required in ("manifest.json", "SHA256SUMS"):
        if required not in names:
            raise ReleaseError(f"artifact {artifact} has no {top}/{required}")
    return members


def extract_artifact(artifact: str, version: str, dest: str) -> None:
    """Unpack the artifact's top folder into ``dest`` (plain files and folders only)."""
    members = inspect_artifact(artifact, version)
    with tarfile.open(artifact, "r:gz") as tar:
        for member, rel in members:
            if rel is None:
                continue
            target = os.path.join(dest, rel)
            if member.isdir():
                os.makedirs(target, mode=0o755, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                raise ReleaseError(f"artifact member {member.name!r} cannot be read")
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)


def verify_sha256sums(folder: str) -> int:
    """Check every file SHA256SUMS lists; return how many were checked."""
    sums_file = os.path.join(folder, "SHA256SUMS")
    checked = 0
    with open(sums_file, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            try:
                expected, name = line.split(None, 1)
            except ValueError as exc:
                raise ReleaseError(f"SHA256SUMS line {line_no} is malformed") from exc
            name = name.lstrip("*")
            full = os.path.normpath(os.path.join(folder, name))
            if not full.startswith(folder + os.sep):
                raise ReleaseError(f"SHA256SUMS names a file outside the release: {name}")
            if not os.path.isfile(full):
                raise ReleaseError(f"SHA256SUMS lists {name}, missing from the artifact")
            if sha256_of(full) != expected.lower():
                raise ReleaseError(f"sha256 of {name} does not match SHA256SUMS")
            checked += 1
    if checked == 0:
        raise ReleaseError("SHA256SUMS lists no files")
    return checked


def check_manifest(folder: str, version: str) -> dict[str, Any]:
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    except ValueError as exc:
        raise ReleaseError(f"manifest.json of the artifact is not valid JSON: {exc}") from exc
    if manifest.get("version") != version:
        raise ReleaseError(
            f"artifact manifest says version {manifest.get('version')!r}, expected {version}"
        )
    return manifest


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise ReleaseError(f"{what} failed (exit {result.returncode}): " + "\n".join(tail))


# Prints the pip wheel the interpreter's ensurepip would install (Debian: python3-venv
# brings /usr/share/python-wheels; other builds bundle it inside ensurepip).
_FIND_PIP_WHEEL = """
import ensurepip, glob, os, sysconfig
folders = [sysconfig.get_config_var("WHEEL_PKG_DIR") or "",
           os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")]
wheels = [w for folder in folders if folder for w in glob.glob(os.path.join(folder, "pip-*.whl"))]
print(wheels[0] if wheels else "")
"""


def create_venv(folder: str, python: str, version: str) -> None:
    """venv/ with the service from the artifact's wheels and no pip in it: pip runs
    from the interpreter's own pip wheel (a release is never pip-installed into
    afterwards, and seeding pip and setuptools into every venv cost more CPU than
    the install itself)."""
    venv = os.path.join(folder, "venv")
    venv_python = os.path.join(venv, "bin", "python")
    _run([python, "-m", "venv", "--without-pip", venv], f"creating the venv with {python}")
    found = subprocess.run(  # noqa: S603 - the interpreter the caller named
        [venv_python, "-c", _FIND_PIP_WHEEL], capture_output=True, text=True, check=False
    )
    wheel = found.stdout.strip()
    if found.returncode != 0 or not wheel:
        raise ReleaseError(
            f"{python} has no pip wheel for ensurepip (Debian: install python3-venv): "
            + (found.stderr.strip().splitlines() or ["none found"])[-1]
        )
    _run(
        [
            venv_python,
            os.path.join(wheel, "pip"),
            "install",
            "--no-index",
            "--disable-pip-version-check",
            "--no-cache-dir",
            "--find-links",
            os.path.join(folder, "wheels"),
            f"{PACKAGE_NAME}=={version}",
        ],
        f"pip install of {PACKAGE_NAME}=={version} from the artifact's wheels",
    )


def discard_folder(tree: ReleaseTree, folder: str) -> None:
    """Remove a release folder: renamed to a dot folder first (atomic), then deleted."""
    trash = os.path.join(tree.releases_dir, f".discard-{os.path.basename(folder)}-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)


def install_release(
    *,
    tree: ReleaseTree,
    version: str,
    artifact: str,
    checksum: str,
    python: str,
    hook: StepHook = _no_hook,
) -> dict[str, Any]:
    """Install ``artifact`` as releases/<version>; the caller holds the lock.

    The folder carries the unfinished marker from its first moment until the
    metadata is written, so an interrupted install never counts as a release."""
    folder = tree.release_dir(version)
    if os.path.lexists(folder):
        shutil.rmtree(folder)  # an interrupted earlier attempt (complete ones never get here)
    os.makedirs(tree.releases_dir, mode=0o755, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{version}.", dir=tree.releases_dir)
    with open(os.path.join(staging, UNFINISHED_MARKER), "w", encoding="utf-8") as f:
        f.write(f"started {now_iso()} by pid {os.getpid()}\n")
    os.chmod(staging, 0o755)  # noqa: S103 - code folder the service user must read
    # The named folder appears only with its marker inside.
    os.rename(staging, folder)
    hook("created")
    try:
        extract_artifact(artifact, version, folder)
        hook("extracted")
        verify_sha256sums(folder)
        manifest = check_manifest(folder, version)
        hook("verified")
        create_venv(folder, python, version)
        hook("installed")
    except (ReleaseError, OSError):
        # A rejected artifact leaves no half-installed folder behind (an interrupted
        # run's folder, which no except clause sees, goes at the next run's prune).
        discard_folder(tree, folder)
        raise
    active = tree.active()
    metadata = {
        "version": version,
        "checksum": f"sha256:{checksum}",
        "installed_at": now_iso(),
        "installed_by": current_user(),
        "previous": active,
        "artifact": os.path.basename(artifact),
        "python": python,
        "broken": bool(manifest.get("broken", False)),
        "migrations": manifest.get("migrations", []),
    }
    tree._write_json(os.path.join(folder, METADATA_FILE), metadata)
    hook("metadata")
    os.unlink(os.path.join(folder, UNFINISHED_MARKER))
    fsync_folder(folder)
    hook("complete")
    return metadata
