"""OpenAPI shapes of /api/secrets/ (documentation only: the services validate)."""

from __future__ import annotations

from rest_framework import serializers


class SecretOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    fingerprint = serializers.CharField(help_text="first 16 hex digits of an HMAC-SHA256 of the value under a server key")
    key_id = serializers.CharField(help_text="master key the data key is wrapped under")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)


class SecretCreate(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    value = serializers.CharField(write_only=True, min_length=4, help_text="write-only; never returned")
    description = serializers.CharField(required=False, max_length=1000)


class SecretPatch(serializers.Serializer):
    name = serializers.RegexField(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$", required=False)
    value = serializers.CharField(write_only=True, required=False, min_length=4)
    description = serializers.CharField(required=False, max_length=1000)
