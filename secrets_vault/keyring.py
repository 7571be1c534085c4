"""The master key ring: ``ZYRA_MASTER_KEYS="k2:<base64 32 bytes>,k1:<base64 32 bytes>"``.

The first key wraps new data keys; every key unwraps. Keys come only from the
environment (read once in ``zyra.settings.vault``); this module parses and
checks them and never logs or stores them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

log = logging.getLogger("secrets_vault.keyring")

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class KeyRingError(ImproperlyConfigured):
    """ZYRA_MASTER_KEYS is missing or malformed. Raised at start-up, never swallowed."""


@dataclass(frozen=True)
class KeyRing:
    primary_id: str
    keys: dict[str, bytes] = field(repr=False)  # repr=False: never print key bytes

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise KeyRingError(
                f"master key {key_id!r} is not in ZYRA_MASTER_KEYS (known: {sorted(self.keys)}); "
                "a secret wrapped under it cannot be decrypted"
            ) from None

    @property
    def primary(self) -> bytes:
        return self.keys[self.primary_id]


def parse_keyring(raw: str, *, source: str = "ZYRA_MASTER_KEYS") -> KeyRing:
    """Parse ``id:base64,id:base64``. Every problem names the entry, never the key bytes."""
    entries = [part.strip() for part in raw.split(",") if part.strip()]
    if not entries:
        raise KeyRingError(f"{source} is empty: set it to 'k1:<base64 of 32 random bytes>'")
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for index, entry in enumerate(entries):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep:
            raise KeyRingError(f"{source} entry {index + 1} must look like '<id>:<base64 key>'")
        if not _KEY_ID.match(key_id):
            raise KeyRingError(f"{source} entry {index + 1}: key id must match [A-Za-z0-9_.-]{{1,32}}")
        if key_id in keys:
            raise KeyRingError(f"{source}: key id {key_id!r} appears twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            try:
                key = base64.urlsafe_b64decode(encoded.strip())
            except (binascii.Error, ValueError):
                raise KeyRingError(f"{source}: key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise KeyRingError(f"{source}: key {key_id!r} must decode to {KEY_BYTES} bytes, not {len(key)}")
        keys[key_id] = key
        order.append(key_id)
    return KeyRing(primary_id=order[0], keys=keys)


def generate_key_entry(key_id: str) -> str:
    """A fresh ``id:base64`` entry (for operators and the embedded development ring)."""
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode()}"


_cache: dict[str, KeyRing] = {}
_dev_raw: dict[str, str] = {}
_lock = threading.Lock()


def _dev_keyring(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_key_entry("dev1") + "\n")
    message = (
        f"ZYRA_MASTER_KEYS is not set: embedded mode is using the DEVELOPMENT key ring in {path}. "
        "Secrets encrypted with it are only as safe as that file. Set ZYRA_MASTER_KEYS for any real deployment."
    )
    warnings.warn(message, RuntimeWarning, stacklevel=2)
    log.warning("secrets_vault.dev_keyring_in_use path=%s", path)
    return path.read_text().strip()


def get_keyring() -> KeyRing:
    """The key ring for the current settings (cached per distinct value)."""
    raw: str = getattr(settings, "ZYRA_MASTER_KEYS", "") or ""
    source = "ZYRA_MASTER_KEYS"
    if not raw.strip():
        dev_file: str = getattr(settings, "ZYRA_VAULT_DEV_KEY_FILE", "") or ""
        if not dev_file:
            raise KeyRingError(
                "ZYRA_MASTER_KEYS is not set. A deployment with DATABASE_URL must provide the master key ring "
                "in the environment, e.g. ZYRA_MASTER_KEYS='k1:<base64 of 32 random bytes>' "
                "(generate one with: python -c \"import os,base64;print('k1:'+base64.b64encode(os.urandom(32)).decode())\")"
            )
        with _lock:
            if dev_file not in _dev_raw:
                # Warn once per process, not on every decryption.
                _dev_raw[dev_file] = _dev_keyring(Path(dev_file))
            raw = _dev_raw[dev_file]
        source = dev_file
    ring = _cache.get(raw)
    if ring is None:
        ring = parse_keyring(raw, source=source)
        with _lock:
            _cache[raw] = ring
    return ring
