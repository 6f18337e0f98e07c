#!/usr/bin/env bash
# Every module renders with ansible-doc (DOCUMENTATION, EXAMPLES, RETURN parse), and
# every role's argument spec is readable by ansible-doc too (and, where generated, current).
set -euo pipefail
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
cd "$(dirname "$0")/.."
status=0
for module in plugins/modules/*.py; do
  name=$(basename "$module" .py)
  if ! out=$(ansible-doc -t module "llmops.registry.$name" 2>&1); then
    echo "ansible-doc failed for module $name:"; echo "$out"; status=1
  elif ! grep -q "^EXAMPLES:" <<<"$out" || ! grep -q "^RETURN VALUES:" <<<"$out"; then
    echo "module $name lacks EXAMPLES or RETURN"; status=1
  else
    echo "ok module $name"
  fi
done
for role in roles/*/; do
  name=$(basename "$role")
  if ! ansible-doc -t role "llmops.registry.$name" >/dev/null 2>&1; then
    echo "ansible-doc failed for role $name (meta/argument_specs.yml)"; status=1
  else
    echo "ok role $name"
  fi
done
# Generated argument specs (roles with meta/options.yml) must match their source.
if ! python3 tests/gen_argument_specs.py --check; then status=1; fi
exit $status
