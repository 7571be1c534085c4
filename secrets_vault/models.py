from __future__ import annotations

from django.conf import settings
from django.db import models

from secrets_vault.crypto import Envelope


class Secret(models.Model):
    """One named secret of one owner. The row never holds the value.

    ``ciphertext`` is AES-256-GCM under a per-secret data key; ``wrapped_key`` is
    that data key encrypted under master key ``key_id``. Rotation rewrites only
    ``wrapped_key``/``key_id``.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    ciphertext = models.BinaryField()
    nonce = models.BinaryField()
    wrapped_key = models.BinaryField()
    key_id = models.CharField(max_length=32, db_index=True)
    # HMAC-SHA256 of the value under a per-owner key derived from SECRET_KEY.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["owner", "name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="secret_owner_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} (owner {self.owner_id})"

    def envelope(self) -> Envelope:
        return Envelope(
            ciphertext=bytes(self.ciphertext),
            nonce=bytes(self.nonce),
            wrapped_key=bytes(self.wrapped_key),
            key_id=self.key_id,
        )

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:16]
