#!/usr/bin/env python3
"""Builds a release artifact of the registry service for hosts with no internet.

    python3 service/build_artifact.py --version X.Y.Z [--broken] --out dist/

writes dist/schema-registry-X.Y.Z.tar.gz (+ .sha256). The tarball holds one folder
schema-registry-X.Y.Z/ with manifest.json, SHA256SUMS and wheels/ (the service wheel with
the version stamped in, plus every pinned dependency from requirements.lock as cp311
manylinux wheels), so `pip install --no-index --find-links wheels/ schema-registry==X.Y.Z`
works offline on Debian 12's python3.11. --broken builds a variant whose /ready always
fails (for the release tests); manifest.json records broken: true.
Bad input stops the build with a message before anything is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parent
NAME = "schema-registry"
PYTHON_VERSION = "3.11"
PYTHON_TAG = "cp311"
# Debian 12 has glibc 2.36: any of these wheel platforms installs there.
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
# Semantic versioning core: MAJOR.MINOR.PATCH, no leading zeros.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SOURCE_ITEMS = ("pyproject.toml", "openapi.yaml", "src")


class BuildError(Exception):
    """The build cannot go on; the message says why."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True, help="release version, MAJOR.MINOR.PATCH")
    parser.add_argument("--broken", action="store_true", help="build the failing-/ready variant")
    parser.add_argument(
        "--out", default=str(SERVICE_DIR.parent / "dist"), help="output folder (default: dist/)"
    )
    args = parser.parse_args(argv)
    if not SEMVER.match(args.version):
        parser.error(
            f"--version {args.version!r} is not a semantic version MAJOR.MINOR.PATCH "
            "(e.g. 1.4.0, no leading zeros, no prefix)"
        )
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {args.out!r} exists and is not a folder")
    return args


def stamp_source(work: Path, version: str, broken: bool) -> Path:
    """A copy of the service source with the version and broken flag written in."""
    source = work / "source"
    source.mkdir()
    for item in _SOURCE_ITEMS:
        origin = SERVICE_DIR / item
        if origin.is_dir():
            shutil.copytree(
                origin, source / item, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(origin, source / item)
    # The package's openapi.yaml links to service/openapi.yaml: put a real file there.
    packaged_openapi = source / "src" / "schema_registry" / "openapi.yaml"
    packaged_openapi.unlink(missing_ok=True)
    shutil.copy2(SERVICE_DIR / "openapi.yaml", packaged_openapi)
    pyproject = source / "pyproject.toml"
    text, count = re.subn(
        r'(?m)^version = "[^"]*"$', f'version = "{version}"', pyproject.read_text()
    )
    if count != 1:
        raise BuildError("pyproject.toml: could not find the project version line")
    pyproject.write_text(text)
    (source / "src" / "schema_registry" / "_version.py").write_text(
        '"""Release identity, written by build_artifact.py."""\n\n'
        f'__version__ = "{version}"\n'
        f"BROKEN = {broken!r}\n"
    )
    return source


def run(command: list[str]) -> None:
    # Commands are built here from constants and our own paths, never from user text.
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-3000:]}")


def require_pip() -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise BuildError(
            f"{sys.executable} has no pip; install python3-pip or run with a venv's python"
        )


def build_wheels(source: Path, wheels: Path) -> None:
    require_pip()
    wheels.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(source)])
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    run(
        [
            *pip,
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--python-version",
            PYTHON_VERSION,
            "--implementation",
            "cp",
            "--abi",
            PYTHON_TAG,
            *platform_args,
            "--dest",
            str(wheels),
            "--requirement",
            str(SERVICE_DIR / "requirements.lock"),
        ]
    )


def migrations_of(source: Path) -> list[str]:
    folder = source / "src" / "schema_registry" / "migrations"
    return sorted(p.stem for p in folder.glob("*.sql"))


def write_manifest(release: Path, version: str, broken: bool, migrations: list[str]) -> None:
    files = [
        {"path": str(p.relative_to(release)), "sha256": sha256_of(p), "size": p.stat().st_size}
        for p in sorted((release / "wheels").iterdir())
    ]
    service_wheel = next(
        (f["path"] for f in files if Path(f["path"]).name.startswith("schema_registry-")), None
    )
    if service_wheel is None:
        raise BuildError("the service wheel is missing from wheels/")
    manifest = {
        "name": NAME,
        "version": version,
        "python_tag": PYTHON_TAG,
        "platforms": list(PLATFORMS),
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "broken": broken,
        "migrations": migrations,
        "service_wheel": service_wheel,
        "files": files,
    }
    (release / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lines = [f"{f['sha256']}  {f['path']}" for f in files]
    lines.append(f"{sha256_of(release / 'manifest.json')}  manifest.json")
    (release / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def build(version: str, broken: bool, out: Path) -> Path:
    folder = f"{NAME}-{version}"
    with tempfile.TemporaryDirectory(prefix="schema-registry-build-") as tmp:
        work = Path(tmp)
        source = stamp_source(work, version, broken)
        release = work / folder
        release.mkdir()
        build_wheels(source, release / "wheels")
        write_manifest(release, version, broken, migrations_of(source))
        tarball = work / f"{folder}.tar.gz"
        with tarfile.open(tarball, "w:gz") as archive:
            archive.add(release, arcname=folder)
        checksum = work / f"{folder}.tar.gz.sha256"
        checksum.write_text(f"{sha256_of(tarball)}  {tarball.name}\n")
        # Only now touch --out, so a failed build leaves nothing behind.
        out.mkdir(parents=True, exist_ok=True)
        final = out / tarball.name
        shutil.move(str(tarball), final)
        shutil.move(str(checksum), out / checksum.name)
    return final


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        final = build(args.version, args.broken, Path(args.out))
    except BuildError as exc:
        print(f"build_artifact: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"artifact": str(final), "version": args.version, "broken": args.broken}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
