"""Helpers shared by the release/rollback tests: real artifacts, real venvs, snapshots.

The artifacts are built here in the format of service/build_artifact.py (one top folder
with manifest.json, SHA256SUMS and wheels/) around a tiny but real wheel, so pip really
installs it offline; nothing is mocked.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path


def _collections_root() -> Path:
    """The folder that holds ansible_collections/llmops/registry: the import root.

    Under ansible-test the collection is a real tree .../ansible_collections/llmops/registry
    and the root is the folder above ansible_collections; in the checkout it is the
    collections/ folder, whose ansible_collections/llmops/registry links back here.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if parent.name == "ansible_collections":
            return parent.parent
    return here.parents[2] / "collections"


COLLECTIONS = _collections_root()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))


def python_path() -> str:
    """PYTHONPATH for a child Python that imports the collection: the import root first,
    then whatever the caller had (ansible-test puts its own entries there)."""
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([str(COLLECTIONS), *([inherited] if inherited else [])])


# The code under test, imported once the path above is in place; test files import it
# from here so the import order cannot break it.
from ansible_collections.llmops.registry.plugins.module_utils import (  # noqa: E402
    atomic_file,
    haproxy_admin,
    instance_switch,
    release_actions,
    release_lock,
    releases,
)

write_atomically = atomic_file.write_atomically
perform_release = release_actions.perform_release
perform_rollback = release_actions.perform_rollback
ReleaseError = releases.ReleaseError
LockHeldError = releases.LockHeldError
ReleaseTree = releases.ReleaseTree
validate_version = releases.validate_version
switch_instances = instance_switch.switch_instances
switch_host = instance_switch.switch_host
SwitchError = instance_switch.SwitchError
release_of = instance_switch.release_of
set_servers = haproxy_admin.set_servers
HaproxyError = haproxy_admin.HaproxyError
RunLock = release_lock.RunLock

PYTHON = "/usr/bin/python3"
# The modules next to the module_utils imported above (the checkout through collections/,
# or the ansible_collections tree copy ansible-test runs in).
MODULES = Path(releases.__file__).resolve().parents[1] / "modules"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def build_wheel(version: str) -> tuple[str, bytes]:
    """A minimal real wheel of schema-registry with a console script."""
    dist = f"schema_registry-{version}.dist-info"
    files = {
        "schema_registry/__init__.py": f'__version__ = "{version}"\n\n'
        "def main():\n    print(__version__)\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: schema-registry\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\nschema-registry = schema_registry:main\n",
    }
    record = [
        f"{name},{_record_hash(text.encode())},{len(text.encode())}" for name, text in files.items()
    ]
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return f"schema_registry-{version}-py3-none-any.whl", buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def build_artifact(
    out_dir: Path,
    version: str,
    *,
    top: str | None = None,
    manifest_version: str | None = None,
    tamper: bool = False,
    extra_member: tarfile.TarInfo | None = None,
) -> Path:
    """Write schema-registry-<version>.tar.gz and its .sha256 into out_dir."""
    top = top or f"schema-registry-{version}"
    wheel_name, wheel = build_wheel(version)
    manifest = json.dumps(
        {
            "name": "schema-registry",
            "version": manifest_version or version,
            "broken": False,
            "migrations": ["0001_initial"],
        }
    ).encode()
    contents = {"manifest.json": manifest, f"wheels/{wheel_name}": wheel}
    sums = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in contents.items()
    )
    if tamper:
        contents[f"wheels/{wheel_name}"] = wheel + b"tampered"
    artifact = out_dir / f"schema-registry-{version}.tar.gz"
    with tarfile.open(artifact, "w:gz") as tar:
        dir_info = tarfile.TarInfo(top)
        dir_info.type = tarfile.DIRTYPE
        dir_info.mode = 0o755
        tar.addfile(dir_info)
        for name, data in contents.items():
            _add(tar, f"{top}/{name}", data)
        _add(tar, f"{top}/SHA256SUMS", sums.encode())
        if extra_member is not None:
            tar.addfile(extra_member, io.BytesIO(b"") if extra_member.isfile() else None)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    Path(str(artifact) + ".sha256").write_text(f"{digest}  {artifact.name}\n")
    return artifact


def checksum_of(artifact: Path) -> str:
    return hashlib.sha256(artifact.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root with its type, mode, and content hash or link target."""
    result: dict[str, tuple] = {}
    if not root.exists():
        return result
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if full.is_symlink():
                result[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                result[rel] = ("dir", st.st_mode)
            else:
                result[rel] = ("file", st.st_mode, hashlib.sha256(full.read_bytes()).hexdigest())
    return result


def current_target(root: Path) -> str:
    return os.readlink(root / "current")


def run_module(name: str, args: dict, check_mode: bool = False) -> dict:
    """Run a module file the way Ansible does (JSON args, JSON result on stdout)."""
    payload = {
        "ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check_mode, _ansible_diff=True)
    }
    env = dict(os.environ, PYTHONPATH=python_path())
    proc = subprocess.run(
        [sys.executable, str(MODULES / f"{name}.py")],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return json.loads(proc.stdout)
