#!/usr/bin/env bash
# Run every benchmark (each prints a table and, last, one JSON line). PostgreSQL and Redis on loopback.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev >/dev/null
bash scripts/services.sh >/dev/null
rc=0
for b in bench/bench_*.py; do
  echo "=== $b"
  .venv/bin/python "$b" "$@" || { echo "$b failed" >&2; rc=1; }
done
exit $rc
