#!/usr/bin/env bash
# Molecule's dependency step of the all_in_one scenario: what a user does before
# running their own playbook. Builds the collection tarball with ansible-galaxy from
# this checkout, installs it into a fresh collections path in the scenario's ephemeral
# dir (nothing else is on that path; community.general, community.postgresql and
# ansible.posix come from the `ansible` package, as for a user who installed it), and
# builds the service artifact the inventory points schema_registry_artifact_dir at.
set -euo pipefail
#
# Usage (molecule.yml's dependency command; molecule runs it without its MOLECULE_* env):
#   install_collection.sh <checkout> <scenario ephemeral dir>
project="${1:?usage: install_collection.sh <checkout> <ephemeral dir>}"
work="${2:?usage: install_collection.sh <checkout> <ephemeral dir>}"
version="${SCHEMA_REGISTRY_VERSION:-1.0.0}"
rm -rf "$work/build" "$work/collections"
mkdir -p "$work/build" "$work/collections" "$work/dist"
ansible-galaxy collection build --force --output-path "$work/build" "$project"
tarball=$(ls "$work"/build/llmops-registry-*.tar.gz)
ansible-galaxy collection install --no-deps --force -p "$work/collections" "$tarball"
# The installed copy is a real folder, not a link back to the checkout.
test -d "$work/collections/ansible_collections/llmops/registry/roles/schema_registry"
test ! -L "$work/collections/ansible_collections/llmops/registry"
if [[ ! -f "$work/dist/schema-registry-$version.tar.gz" ]]; then
    python3 "$project/service/build_artifact.py" --version "$version" --out "$work/dist"
fi
