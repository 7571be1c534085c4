"""Envelope encryption: AES-256-GCM data key per secret, wrapped by a master key.

Pure apart from the key ring argument: no ORM. The associated data binds a
ciphertext (and its wrapped key) to one owner and one secret name, so a row's
blobs copied onto another row do not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secrets_vault.keyring import KeyRing

NONCE_BYTES = 12
FORMAT = b"zyra-secret-v1"


class DecryptionError(Exception):
    """A ciphertext or wrapped key failed authentication (wrong key, tampered row, wrong AAD)."""


@dataclass(frozen=True)
class Envelope:
    ciphertext: bytes
    nonce: bytes
    wrapped_key: bytes  # wrap nonce (12 bytes) + AES-GCM(master, data key)
    key_id: str


def secret_aad(owner_id: int, name: str) -> bytes:
    return b"%s|owner=%d|name=%s" % (FORMAT, int(owner_id), name.encode("utf-8"))


def _wrap_aad(aad: bytes, key_id: str) -> bytes:
    return b"wrap|" + key_id.encode() + b"|" + aad


def wrap_data_key(data_key: bytes, *, ring: KeyRing, aad: bytes) -> tuple[bytes, str]:
    key_id = ring.primary_id
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(ring.primary).encrypt(nonce, data_key, _wrap_aad(aad, key_id)), key_id


def unwrap_data_key(wrapped: bytes, *, key_id: str, ring: KeyRing, aad: bytes) -> bytes:
    master = ring.key(key_id)
    nonce, body = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
    try:
        return AESGCM(master).decrypt(nonce, body, _wrap_aad(aad, key_id))
    except InvalidTag:
        raise DecryptionError(f"the data key does not unwrap under master key {key_id!r} (wrong key or tampered row)") from None


def encrypt(value: str, *, ring: KeyRing, aad: bytes) -> Envelope:
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, value.encode("utf-8"), aad)
    wrapped, key_id = wrap_data_key(data_key, ring=ring, aad=aad)
    return Envelope(ciphertext=ciphertext, nonce=nonce, wrapped_key=wrapped, key_id=key_id)


def decrypt(envelope: Envelope, *, ring: KeyRing, aad: bytes) -> str:
    data_key = unwrap_data_key(envelope.wrapped_key, key_id=envelope.key_id, ring=ring, aad=aad)
    try:
        plain = AESGCM(data_key).decrypt(envelope.nonce, envelope.ciphertext, aad)
    except InvalidTag:
        raise DecryptionError("the secret's ciphertext failed authentication (tampered row or wrong owner/name)") from None
    return plain.decode("utf-8")


def rewrap(envelope: Envelope, *, ring: KeyRing, aad: bytes) -> Envelope:
    """The same data key and ciphertext, with the data key wrapped under the primary master key."""
    data_key = unwrap_data_key(envelope.wrapped_key, key_id=envelope.key_id, ring=ring, aad=aad)
    wrapped, key_id = wrap_data_key(data_key, ring=ring, aad=aad)
    return Envelope(ciphertext=envelope.ciphertext, nonce=envelope.nonce, wrapped_key=wrapped, key_id=key_id)


def fingerprint_key(secret_key: str, owner_id: int) -> bytes:
    """Per-owner HMAC key derived from Django's SECRET_KEY.

    A keyed HMAC, not a plain hash: a fingerprint cannot be brute-forced offline
    without the server key, and equal values of two owners fingerprint differently.
    It does not depend on the master keys, so rotation leaves fingerprints unchanged.
    """
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"zyra-secret-fingerprint-v1", info=b"owner=%d" % int(owner_id))
    return hkdf.derive(secret_key.encode("utf-8"))


def fingerprint(value: str, *, secret_key: str, owner_id: int) -> str:
    return hmac.new(fingerprint_key(secret_key, owner_id), value.encode("utf-8"), hashlib.sha256).hexdigest()
