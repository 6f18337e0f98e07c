#!/usr/bin/env bash
# Creates (or refreshes) service/.venv with the pinned runtime deps, the test tools and
# the service itself in editable mode. Safe to run again: pip only fills in what is missing.
set -euo pipefail
service_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${service_dir}/.venv"
if [[ ! -x "${venv}/bin/python" ]]; then
    python3 -m venv "${venv}"
fi
"${venv}/bin/pip" install --quiet --disable-pip-version-check \
    -r "${service_dir}/requirements.lock" -r "${service_dir}/requirements-dev.txt"
"${venv}/bin/pip" install --quiet --disable-pip-version-check --no-deps -e "${service_dir}"
echo "service venv ready: ${venv}"
