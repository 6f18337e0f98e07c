#!/usr/bin/env bash
# Runs Molecule scenarios, JOBS at a time (each scenario boots its own lab, so they
# do not share hosts), keeps each scenario's log, prints the log of any that failed
# and a closing "molecule: N passed, N failed" line. A scenario that runs longer than
# MOLECULE_TIMEOUT seconds is stopped, its lab removed, and counted as failed: one hung
# scenario must not use up the whole CI time.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$1; shift
logs=.cache/molecule-logs
mkdir -p "$logs"
rm -f "$logs"/*.result

# The failed Ansible tasks and pytest tests of a scenario's log, without colours or times.
failures() {
  sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^ *[0-9]* //' "$logs/$1.log" \
    | grep -E -A4 'fatal: |\[ERROR\]: |^FAILED |^E  |^=== TIMEOUT' | head -n "${2:-60}"
}

run_one() {
  local scenario=$1 start=$SECONDS rc
  # Each log line starts with the seconds since the scenario started: where its time goes.
  timeout --kill-after=60 "$scenario_timeout" molecule test -s "$scenario" 2>&1 \
    | while IFS= read -r line; do printf '%5d %s\n' "$(( SECONDS - start ))" "$line"; done >"$logs/$scenario.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "=== TIMEOUT $scenario: stopped after $scenario_timeout s" >>"$logs/$scenario.log"
    python3 lab/labctl.py down --lab "$scenario" >>"$logs/$scenario.log" 2>&1
  fi
  if [ "$rc" -eq 0 ]; then
    echo "pass $(( SECONDS - start ))" >"$logs/$scenario.result"
    echo "=== PASS $scenario ($(( SECONDS - start )) s)"
  else
    echo "fail $(( SECONDS - start ))" >"$logs/$scenario.result"
    echo "=== FAIL $scenario ($(( SECONDS - start )) s): last lines of $logs/$scenario.log"
    tail -n 120 "$logs/$scenario.log"
    echo "=== FAIL $scenario: failed tasks and tests"
    failures "$scenario"
  fi
}
export -f run_one failures
scenario_timeout=${MOLECULE_TIMEOUT:-3600}
export logs scenario_timeout

printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}

# CI keeps only the end of the output: every failed scenario's failures once more, last.
for scenario in "$@"; do
  if ! grep -q '^pass' "$logs/$scenario.result" 2>/dev/null; then
    echo "=== FAILED $scenario ($(cut -d' ' -f2 "$logs/$scenario.result" 2>/dev/null) s):"
    failures "$scenario" 30
  fi
done
passed=$(grep -l '^pass' "$logs"/*.result 2>/dev/null | wc -l)
failed=$(( $# - passed ))
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
