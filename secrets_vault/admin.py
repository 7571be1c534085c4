from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from secrets_vault.models import Secret


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    """Metadata only: the encrypted blobs are not shown and values cannot be entered here."""

    list_display = ("name", "owner", "key_id", "short_fingerprint", "created_at", "updated_at", "last_used_at")
    list_filter = ("key_id",)
    search_fields = ("name", "owner__username")
    fields = ("owner", "name", "description", "key_id", "fingerprint", "created_at", "updated_at", "last_used_at")
    readonly_fields = ("owner", "name", "key_id", "fingerprint", "created_at", "updated_at", "last_used_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Values are entered through the API, which encrypts them.
        return False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).defer("ciphertext", "nonce", "wrapped_key")
