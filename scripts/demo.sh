#!/usr/bin/env bash
# Set up and run the main job on the embedded default (SQLite, in-process broker and worker):
# the example workflows, each end to end, with live progress and a final table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DJANGO_SETTINGS_MODULE=zyra.settings
export ZYRA_LOG_LEVEL="${ZYRA_LOG_LEVEL:-WARNING}"
unset DATABASE_URL CELERY_BROKER_URL REDIS_URL || true
.venv/bin/python manage.py migrate --verbosity 0
status=0
.venv/bin/python manage.py run_workflow examples/order_fulfilment.json --input order_id=1001 --no-migrate || status=1
.venv/bin/python manage.py run_workflow examples/health_monitor.json --no-migrate || status=1
.venv/bin/python manage.py run_workflow examples/parallel_report.json --no-migrate || status=1
exit $status
