"""Master key rotation: re-wrap under the newest key, resumable, then drop the old key."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from secrets_vault import services
from secrets_vault.checks import keyring_matches_stored_secrets
from secrets_vault.models import Secret

K1 = "k1:" + base64.b64encode(b"\x01" * 32).decode()
K2 = "k2:" + base64.b64encode(b"\x02" * 32).decode()


def _values(user: Any) -> dict[str, str]:
    return {s.name: services.secret_resolve(owner_id=user.pk, name=s.name, touch=False) for s in Secret.objects.filter(owner=user)}


@pytest.mark.django_db
def test_rotate_then_remove_old_key(user: Any, other_user: Any) -> None:
    with override_settings(ZYRA_MASTER_KEYS=K1):
        expected = {f"S{i}": f"value-number-{i}-xyz" for i in range(7)}
        for name, value in expected.items():
            services.secret_create(owner=user, name=name, value=value)
        services.secret_create(owner=other_user, name="S0", value="bob-value-000")
        before = {s.pk: (bytes(s.ciphertext), bytes(s.nonce), bytes(s.wrapped_key), s.fingerprint) for s in Secret.objects.all()}
        assert set(Secret.objects.values_list("key_id", flat=True)) == {"k1"}

    with override_settings(ZYRA_MASTER_KEYS=f"{K2},{K1}"):
        out = io.StringIO()
        call_command("rotate_master_key", "--batch-size", "3", stdout=out)
        assert "rewrapped=8" in out.getvalue() and "remaining=0" in out.getvalue()
        assert set(Secret.objects.values_list("key_id", flat=True)) == {"k2"}
        for s in Secret.objects.all():
            ct, nonce, wrapped, fp = before[s.pk]
            # Ciphertexts untouched; only the wrapping changed.
            assert bytes(s.ciphertext) == ct and bytes(s.nonce) == nonce and s.fingerprint == fp
            assert bytes(s.wrapped_key) != wrapped
        # A second run is a no-op.
        out = io.StringIO()
        call_command("rotate_master_key", stdout=out)
        assert "rewrapped=0" in out.getvalue() and "already_current=8" in out.getvalue()

    with override_settings(ZYRA_MASTER_KEYS=K2):
        assert _values(user) == expected
        assert services.secret_resolve(owner_id=other_user.pk, name="S0") == "bob-value-000"
        assert keyring_matches_stored_secrets() == []


@pytest.mark.django_db
def test_interrupted_rotation_resumes(user: Any) -> None:
    with override_settings(ZYRA_MASTER_KEYS=K1):
        for i in range(10):
            services.secret_create(owner=user, name=f"R{i}", value=f"resume-value-{i}")
    with override_settings(ZYRA_MASTER_KEYS=f"{K2},{K1}"):
        first = services.secrets_rotate_master_key(batch_size=2, max_rows=5)
        assert first.rewrapped == 5 and first.remaining == 5
        # Mid-rotation both keys are in use and everything still decrypts.
        assert set(Secret.objects.values_list("key_id", flat=True)) == {"k1", "k2"}
        assert _values(user)["R9"] == "resume-value-9"
        out = io.StringIO()
        call_command("rotate_master_key", stdout=out)
        assert "rewrapped=5" in out.getvalue() and "already_current=5" in out.getvalue() and "remaining=0" in out.getvalue()
    with override_settings(ZYRA_MASTER_KEYS=K2):
        assert _values(user) == {f"R{i}": f"resume-value-{i}" for i in range(10)}


@pytest.mark.django_db
def test_missing_or_wrong_key_fails_loudly(user: Any) -> None:
    with override_settings(ZYRA_MASTER_KEYS=K1):
        services.secret_create(owner=user, name="LOUD", value="loud-value-1")
    # Old key removed before rotation: the check and the command say so.
    with override_settings(ZYRA_MASTER_KEYS=K2):
        errors = keyring_matches_stored_secrets()
        assert [e.id for e in errors] == ["secrets_vault.E002"]
        with pytest.raises(CommandError, match="'k1' is not in ZYRA_MASTER_KEYS"):
            call_command("rotate_master_key", stdout=io.StringIO())
    # Same id, different key bytes.
    impostor = "k1:" + base64.b64encode(b"\x09" * 32).decode()
    with override_settings(ZYRA_MASTER_KEYS=impostor):
        assert [e.id for e in keyring_matches_stored_secrets()] == ["secrets_vault.E003"]
        with pytest.raises(Exception, match="does not unwrap"):
            services.secret_resolve(owner_id=user.pk, name="LOUD")
    with override_settings(ZYRA_MASTER_KEYS="k1:garbage"):
        assert [e.id for e in keyring_matches_stored_secrets()] == ["secrets_vault.E001"]


def test_process_refuses_to_start_without_keys_outside_embedded_mode(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    code = "import django; django.setup()"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZYRA_MASTER")}
    base["DJANGO_SETTINGS_MODULE"] = "zyra.settings"
    base["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/postgres"
    base["ZYRA_VAR_DIR"] = str(tmp_path)
    for keys, needle in [(None, "ZYRA_MASTER_KEYS is not set"), ("k1:YWJj", "must decode to 32 bytes")]:
        env = dict(base)
        if keys is not None:
            env["ZYRA_MASTER_KEYS"] = keys
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode != 0 and needle in proc.stderr, proc.stderr[-2000:]
    # Embedded (no DATABASE_URL): a development key file, with a loud warning.
    env = {k: v for k, v in base.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL"}}
    proc = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "DEVELOPMENT key ring" in proc.stderr
    key_file = tmp_path / "dev-master-keys"
    assert key_file.exists() and (key_file.stat().st_mode & 0o777) == 0o600


@pytest.mark.django_db
def test_workflow_still_runs_after_rotation_and_old_key_removal(user: Any, server: Any) -> None:
    """The engine's own executor, driven in-process node by node (no broker: nothing commits here)."""
    from executions.executor import node_execute
    from executions.models import NodeRun, Run
    from executions.services import run_start
    from tests.support.factories import edge, make_workflow, node

    with override_settings(ZYRA_MASTER_KEYS=K1):
        services.secret_create(owner=user, name="API_TOKEN", value="rotated-token-abc123")
    definition = {
        "nodes": [
            node("start", "MANUAL"),
            node("call", "HTTP_REQUEST", {"url": server.url("/auth"), "headers": {"Authorization": "Bearer {{ secrets.API_TOKEN }}"}}),
        ],
        "edges": [edge("start", "call")],
    }
    wf = make_workflow(user, definition)
    with override_settings(ZYRA_MASTER_KEYS=f"{K2},{K1}"):
        call_command("rotate_master_key", stdout=io.StringIO())
    with override_settings(ZYRA_MASTER_KEYS=K2):
        run = run_start(workflow=wf, inputs={}, user=user)
        for _ in range(10):
            queued = list(NodeRun.objects.filter(run=run, status="queued"))
            if not queued:
                break
            for nr in queued:
                assert node_execute(node_run_id=nr.pk, attempt=nr.attempt)
        run = Run.objects.get(pk=run.pk)
        assert run.status == "succeeded", dict(run.node_runs.values_list("node_id", "error"))
    assert [r.headers.get("authorization") for r in server.requests] == ["Bearer rotated-token-abc123"]
