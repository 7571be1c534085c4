#!/usr/bin/env bash
# Run every benchmark (each prints a table and, last, one JSON line). PostgreSQL and Redis on loopback.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev >/dev/null
bash scripts/services.sh >/dev/null
rc=0
for b in bench/bench_*.py; do
  echo "=== $b"
  if [ "$(basename "$b")" = bench_outbound.py ]; then
    # The breaker's state lives in PostgreSQL and the limiter in Redis in production: measure that.
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/zyra_bench_outbound REDIS_URL=redis://127.0.0.1:6379/3 \
      .venv/bin/python "$b" "$@" || { echo "$b failed" >&2; rc=1; }
  else
    .venv/bin/python "$b" "$@" || { echo "$b failed" >&2; rc=1; }
  fi
done
exit $rc
