"""Envelope encryption and key ring parsing: pure, no database."""

from __future__ import annotations

import base64

import pytest

from secrets_vault import crypto
from secrets_vault.keyring import KeyRingError, generate_key_entry, parse_keyring

K1 = "k1:" + base64.b64encode(b"1" * 32).decode()
K2 = "k2:" + base64.b64encode(b"2" * 32).decode()


def test_round_trip_and_blobs_do_not_contain_the_value() -> None:
    ring = parse_keyring(K1)
    value = "sk-live-" + "A" * 40
    aad = crypto.secret_aad(7, "STRIPE")
    env = crypto.encrypt(value, ring=ring, aad=aad)
    assert env.key_id == "k1"
    assert len(env.nonce) == 12
    for blob in (env.ciphertext, env.wrapped_key, env.nonce):
        assert value.encode() not in blob
        assert b"AAAAAAAA" not in blob
    assert crypto.decrypt(env, ring=ring, aad=aad) == value


def test_each_encryption_uses_a_fresh_data_key_and_nonce() -> None:
    ring = parse_keyring(K1)
    aad = crypto.secret_aad(1, "X")
    a = crypto.encrypt("same-value", ring=ring, aad=aad)
    b = crypto.encrypt("same-value", ring=ring, aad=aad)
    assert a.ciphertext != b.ciphertext and a.wrapped_key != b.wrapped_key and a.nonce != b.nonce


def test_aad_binds_owner_and_name() -> None:
    ring = parse_keyring(K1)
    env = crypto.encrypt("value-1234", ring=ring, aad=crypto.secret_aad(1, "A"))
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(env, ring=ring, aad=crypto.secret_aad(2, "A"))
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(env, ring=ring, aad=crypto.secret_aad(1, "B"))


def test_tampered_ciphertext_or_wrapped_key_fails() -> None:
    ring = parse_keyring(K1)
    aad = crypto.secret_aad(1, "A")
    env = crypto.encrypt("value-1234", ring=ring, aad=aad)
    bad_ct = crypto.Envelope(bytes([env.ciphertext[0] ^ 1]) + env.ciphertext[1:], env.nonce, env.wrapped_key, env.key_id)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(bad_ct, ring=ring, aad=aad)
    bad_wrap = crypto.Envelope(env.ciphertext, env.nonce, env.wrapped_key[:-1] + bytes([env.wrapped_key[-1] ^ 1]), env.key_id)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(bad_wrap, ring=ring, aad=aad)


def test_wrong_master_key_value_fails_loudly() -> None:
    env = crypto.encrypt("value-1234", ring=parse_keyring(K1), aad=b"x")
    impostor = parse_keyring("k1:" + base64.b64encode(b"9" * 32).decode())
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(env, ring=impostor, aad=b"x")


def test_rewrap_keeps_ciphertext_and_moves_to_primary() -> None:
    old = parse_keyring(K1)
    both = parse_keyring(f"{K2},{K1}")
    only_new = parse_keyring(K2)
    env = crypto.encrypt("rotate-me", ring=old, aad=b"a")
    new = crypto.rewrap(env, ring=both, aad=b"a")
    assert new.key_id == "k2" and new.ciphertext == env.ciphertext and new.nonce == env.nonce
    assert crypto.decrypt(new, ring=only_new, aad=b"a") == "rotate-me"
    with pytest.raises(KeyRingError):
        crypto.decrypt(env, ring=only_new, aad=b"a")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " , ",
        "k1",
        "k1:not base64!!",
        "k1:" + base64.b64encode(b"short").decode(),
        "k1:" + base64.b64encode(b"x" * 33).decode(),
        f"{K1},{K1}",
        "bad id:" + base64.b64encode(b"1" * 32).decode(),
    ],
)
def test_malformed_key_rings_are_rejected(raw: str) -> None:
    with pytest.raises(KeyRingError) as exc:
        parse_keyring(raw)
    # The message never carries key material.
    assert base64.b64encode(b"1" * 32).decode() not in str(exc.value)


def test_key_ring_order_first_encrypts() -> None:
    ring = parse_keyring(f" {K2} , {K1} ")
    assert ring.primary_id == "k2" and set(ring.keys) == {"k1", "k2"}
    assert "2222" not in repr(ring)
    assert parse_keyring(generate_key_entry("fresh")).primary_id == "fresh"


def test_fingerprint_is_keyed_and_per_owner() -> None:
    a = crypto.fingerprint("value-1234", secret_key="s1", owner_id=1)
    assert a == crypto.fingerprint("value-1234", secret_key="s1", owner_id=1)
    assert a != crypto.fingerprint("value-1234", secret_key="s2", owner_id=1)
    assert a != crypto.fingerprint("value-1234", secret_key="s1", owner_id=2)
    import hashlib

    assert a != hashlib.sha256(b"value-1234").hexdigest()
