"""OpenAPI shapes of /api/webhooks/ and /api/schedules/ (documentation only: the services validate)."""

from __future__ import annotations

from rest_framework import serializers

from triggers.models import SigningScheme


class SigningSecretOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    fingerprint = serializers.CharField()
    created_at = serializers.DateTimeField()


class WebhookOut(serializers.Serializer):
    id = serializers.UUIDField()
    workflow_id = serializers.UUIDField()
    node_id = serializers.CharField()
    token = serializers.CharField()
    path = serializers.CharField()
    url = serializers.CharField()
    signing_scheme = serializers.ChoiceField(choices=SigningScheme.choices)
    unsigned = serializers.BooleanField()
    signing_secrets = SigningSecretOut(many=True)
    secret_names = serializers.ListField(child=serializers.CharField())
    max_body_bytes = serializers.IntegerField()
    rate_limit_per_s = serializers.IntegerField()
    is_active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class WebhookPatch(serializers.Serializer):
    signing_scheme = serializers.ChoiceField(choices=SigningScheme.choices, required=False)
    max_body_bytes = serializers.IntegerField(required=False, min_value=1)
    rate_limit_per_s = serializers.IntegerField(required=False, min_value=0)
    is_active = serializers.BooleanField(required=False)


class SigningSecretIn(serializers.Serializer):
    secret = serializers.CharField(required=False, write_only=True, help_text="omit to generate one (returned once)")


class SigningSecretCreated(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    fingerprint = serializers.CharField()
    secret = serializers.CharField(required=False, help_text="only when generated; shown once")


class ScheduleOut(serializers.Serializer):
    id = serializers.IntegerField()
    workflow_id = serializers.UUIDField()
    node_id = serializers.CharField()
    cron = serializers.CharField(allow_null=True)
    interval_s = serializers.FloatField(allow_null=True)
    timezone = serializers.CharField()
    catch_up = serializers.BooleanField()
    enabled = serializers.BooleanField()
    next_run_at = serializers.DateTimeField(allow_null=True)
    last_run_at = serializers.DateTimeField(allow_null=True)
    last_run_id = serializers.UUIDField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
