"""Secret services and selectors on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from secrets_vault import selectors, services
from secrets_vault.models import Secret
from secrets_vault.resolver import resolve_secret
from zyra.errors import ZyraError
from zyra.redaction import Redactor, global_redactor

VALUE = "ghp_SuperSecretValue0123456789"


def _raw_row(pk: int) -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM secrets_vault_secret WHERE id = %s", [pk])
        cols = [c.name for c in cur.description]
        return dict(zip(cols, cur.fetchone(), strict=True))


@pytest.mark.django_db
def test_create_stores_no_plaintext(user: Any) -> None:
    s = services.secret_create(owner=user, name="GITHUB_TOKEN", value=VALUE, description="ci")
    row = _raw_row(s.pk)
    for column, cell in row.items():
        blob = bytes(cell) if isinstance(cell, (bytes, memoryview)) else str(cell).encode()
        assert VALUE.encode() not in blob, column
    assert row["key_id"] == "test1"
    assert len(row["fingerprint"]) == 64
    assert services.secret_resolve(owner_id=user.pk, name="GITHUB_TOKEN") == VALUE


@pytest.mark.django_db
def test_resolve_updates_last_used_and_missing_is_keyerror(user: Any) -> None:
    s = services.secret_create(owner=user, name="A_KEY", value=VALUE)
    assert s.last_used_at is None
    services.secret_resolve(owner_id=user.pk, name="A_KEY")
    s.refresh_from_db()
    assert s.last_used_at is not None
    first = s.last_used_at
    # Within a minute: no second write.
    services.secret_resolve(owner_id=user.pk, name="A_KEY")
    s.refresh_from_db()
    assert s.last_used_at == first
    Secret.objects.filter(pk=s.pk).update(last_used_at=first - timedelta(minutes=5))
    services.secret_resolve(owner_id=user.pk, name="A_KEY")
    s.refresh_from_db()
    assert s.last_used_at > first
    with pytest.raises(KeyError):
        services.secret_resolve(owner_id=user.pk, name="NOPE")


@pytest.mark.django_db
def test_owner_isolation(user: Any, other_user: Any) -> None:
    services.secret_create(owner=user, name="MINE", value=VALUE)
    services.secret_create(owner=other_user, name="MINE", value="bobs-value-xyz")
    assert services.secret_resolve(owner_id=other_user.pk, name="MINE") == "bobs-value-xyz"
    assert selectors.secret_names_for_owner(user.pk) == {"MINE"}
    assert selectors.secret_names_for_owner(other_user.pk + 1000) == set()
    with pytest.raises(ZyraError) as exc:
        selectors.secret_get(owner=other_user, ref=str(Secret.objects.get(owner=user).pk))
    assert exc.value.status == 404


@pytest.mark.django_db
def test_duplicate_name_is_409(user: Any) -> None:
    services.secret_create(owner=user, name="DUP", value=VALUE)
    with pytest.raises(ZyraError) as exc:
        services.secret_create(owner=user, name="DUP", value=VALUE)
    assert exc.value.status == 409 and exc.value.code == "duplicate_name"
    assert Secret.objects.filter(owner=user).count() == 1


@pytest.mark.django_db
def test_rename_re_encrypts_and_value_update(user: Any) -> None:
    s = services.secret_create(owner=user, name="OLD", value=VALUE)
    old_ct = bytes(s.ciphertext)
    s = services.secret_update(secret=s, name="NEW")
    assert bytes(s.ciphertext) != old_ct
    assert services.secret_resolve(owner_id=user.pk, name="NEW") == VALUE
    fp = s.fingerprint
    s = services.secret_update(secret=s, value="another-value-9876")
    assert s.fingerprint != fp
    assert services.secret_resolve(owner_id=user.pk, name="NEW") == "another-value-9876"
    s = services.secret_update(secret=s, description="desc only")
    assert services.secret_resolve(owner_id=user.pk, name="NEW") == "another-value-9876"
    services.secret_delete(secret=s)
    assert not Secret.objects.filter(owner=user).exists()


@pytest.mark.django_db
def test_resolver_registers_with_both_redactors(user: Any) -> None:
    services.secret_create(owner=user, name="RESOLVED_ONE", value="resolver-value-42x")
    run_redactor = Redactor()
    assert resolve_secret(owner_id=user.pk, name="RESOLVED_ONE", redactor=run_redactor) == "resolver-value-42x"
    assert run_redactor.redact_text("v=resolver-value-42x") == "v=[redacted:RESOLVED_ONE]"
    assert global_redactor().redact_text("resolver-value-42x") == "[redacted:RESOLVED_ONE]"
    with pytest.raises(KeyError):
        resolve_secret(owner_id=user.pk, name="MISSING", redactor=run_redactor)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "value", "path", "code"),
    [
        ("1abc", VALUE, "/name", "invalid_name"),
        ("has-dash", VALUE, "/name", "invalid_name"),
        ("x" * 101, VALUE, "/name", "invalid_name"),
        (123, VALUE, "/name", "invalid_type"),
        ("OK", 12345678, "/value", "invalid_type"),
        ("OK", "abc", "/value", "too_short"),
        ("OK", "a" * (64 * 1024 + 1), "/value", "too_long"),
        ("OK", "abc\x00def", "/value", "invalid_value"),
        ("OK", "abc\ud800def", "/value", "invalid_value"),
    ],
)
def test_validation(user: Any, name: Any, value: Any, path: str, code: str) -> None:
    with pytest.raises(ZyraError) as exc:
        services.secret_create(owner=user, name=name, value=value)
    assert exc.value.status == 400
    assert [(d.path, d.code) for d in exc.value.details] == [(path, code)]
    if isinstance(value, str):
        assert value not in str(exc.value.as_dict())
    assert not Secret.objects.exists()
