#!/usr/bin/env bash
# Create or reuse .venv and install the requirements (dev ones with --dev).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do command -v "$cand" >/dev/null && { PY="$cand"; break; }; done
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
REQ=requirements.txt
[ "${1:-}" = "--dev" ] && REQ=requirements-dev.txt
STAMP=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)-$(basename $REQ)"
if [ ! -f "$STAMP" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$REQ"
  touch "$STAMP"
fi
