"""Keys come from the environment only: no literal SECRET_KEY, a random development key when embedded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CODE = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "zyra.settings", "ZYRA_VAR_DIR": str(tmp_path)}, **extra)
    return env


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_deployment_without_secret_key_refuses_to_start(tmp_path: Any) -> None:
    proc = _run(_env(tmp_path, DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"))
    assert proc.returncode != 0 and "SECRET_KEY is not set" in proc.stderr, proc.stderr[-2000:]


def test_embedded_mode_generates_one_private_random_key(tmp_path: Any) -> None:
    first, second = _run(_env(tmp_path)), _run(_env(tmp_path))
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:]
    key = first.stdout.strip().splitlines()[-1]
    assert len(key) >= 50 and second.stdout.strip().splitlines()[-1] == key  # reused, not regenerated
    key_file = tmp_path / "dev-secret-key"
    assert key_file.read_text().strip() == key and (key_file.stat().st_mode & 0o777) == 0o600
    other = tmp_path / "other"
    assert _run(_env(other)).stdout.strip().splitlines()[-1] != key  # random per installation


def test_the_environment_wins(tmp_path: Any) -> None:
    proc = _run(_env(tmp_path, SECRET_KEY="from-the-environment-" + "x" * 40))
    assert proc.stdout.strip().splitlines()[-1].startswith("from-the-environment-")
    assert not (tmp_path / "dev-secret-key").exists()
