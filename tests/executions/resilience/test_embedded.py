"""Embedded mode (no DATABASE_URL, no REDIS_URL): the breaker runs on SQLite, the limiter in process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_breaker_and_limiter_work_embedded(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ZYRA_MASTER_KEYS", "ZYRA_TEST_DB"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "zyra.settings",
            "ZYRA_VAR_DIR": str(tmp_path),
            "ZYRA_HTTP_ALLOWLIST": "127.0.0.1",
            "ZYRA_LOG_LEVEL": "WARNING",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tests.executions.resilience.embedded_script"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["engine"] == "django.db.backends.sqlite3" and out["redis_url"] == ""
    assert out["statuses"] == [503, 503, 503]
    assert out["state_after_failures"] == "open"
    assert out["deferred"] == "circuit_open"
    assert out["probe_status"] == 200 and out["state_after_probe"] == "closed"
    assert out["limited"] == "rate_limited"
    assert out["server_counts"] == {"down": 3, "up": 1, "rl": 1}
    assert "breaker_storage_failed" not in proc.stderr  # the portable path, not the fail-open one
