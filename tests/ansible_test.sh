#!/usr/bin/env bash
# ansible-test sanity / units on a copy of this checkout.
#
# ansible-test must run from a real directory whose path ends in
# ansible_collections/<namespace>/<name>/ (not the collections/ link, which points
# back here), so the files git knows about (tracked, plus new ones not ignored) are
# copied to .cache/ansible-test/<command>/ansible_collections/llmops/registry first.
#
# Each sanity test gets its own virtual environment; ansible-test bootstraps pip in
# it with a get-pip script from ci-files.testing.ansible.com, or, when that host is
# not reachable, from ~/.ansible/test/cache/get_pip_<version>.py. The stand-in
# written there runs ensurepip and then installs the pip version asked for from PyPI.
#
# Usage: tests/ansible_test.sh sanity|units [extra ansible-test arguments]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
command="${1:?usage: tests/ansible_test.sh sanity|units [ansible-test arguments]}"
shift
python_version="${ANSIBLE_TEST_PYTHON:-3.11}"
namespace="$(sed -n 's/^namespace: *//p' galaxy.yml)"
name="$(sed -n 's/^name: *//p' galaxy.yml)"
# One copy per command, so sanity and units can run at the same time.
root="$here/.cache/ansible-test/$command/ansible_collections"
tree="$root/$namespace/$name"

# The get-pip stand-in, one per pip version ansible-test asks for.
pip_version="$(python3 - <<'PY'
import re, pathlib, ansible_test
src = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", src.read_text()).group(1))
PY
)"
cache="$HOME/.ansible/test/cache"
stand_in="$cache/get_pip_${pip_version//./_}.py"
if [[ ! -f "$stand_in" ]]; then
    mkdir -p "$cache"
    cat >"$stand_in.tmp" <<'PY'
"""Stand-in for get-pip.py (written by tests/ansible_test.sh): ensurepip, then pip from PyPI."""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade", "--default-pip"])
# ansible-test passes pip options, the packages (pip==X.Y) and --no-setuptools/--no-wheel,
# which get-pip.py understands and pip install does not.
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *args])
PY
    mv "$stand_in.tmp" "$stand_in"
fi

# The copy: what git would see (tracked and new, not ignored), without the collections/
# link (it points back at the checkout) and the .venv link. sanity also leaves out
# service/: the registry service is its own Python project (service/pyproject.toml, its
# own ruff and pytest), not part of the collection (galaxy.yml build_ignore), so
# ansible-test's rules for modules and module_utils are not its rules. units keeps it:
# tests/unit checks the metrics the dashboards and alerts query against the ones the
# service exports (service/src/schema_registry/metrics.py).
skip=(-e '^collections/' -e '^\.venv$')
if [[ "$command" == sanity ]]; then
    skip+=(-e '^service/')
fi
rm -rf "$tree"
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard \
    | grep -zv "${skip[@]}" \
    | rsync -a --from0 --files-from=- ./ "$tree/"
# .cache/ is inside this checkout and ignored by it: ansible-test asks git which files
# exist, so the copy gets a repository of its own (nothing committed, nothing ignored).
git -C "$tree" init -q

cd "$tree"
exec ansible-test "$command" --local --python "$python_version" --color no "$@"
