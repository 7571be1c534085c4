#!/usr/bin/env bash
# Set up and run the whole test suite against PostgreSQL and Redis on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/services.sh
if ! command -v chromium >/dev/null 2>&1; then
  echo "test: installing Debian's chromium for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "test: could not install chromium" >&2
fi
export DJANGO_SETTINGS_MODULE=zyra.settings.test
mkdir -p artifacts
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
