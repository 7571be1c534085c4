from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models


def new_token() -> str:
    return secrets.token_urlsafe(32)


class SigningScheme(models.TextChoices):
    STANDARD_WEBHOOKS = "standard_webhooks", "Standard Webhooks (webhook-signature)"
    GITHUB = "github", "GitHub (X-Hub-Signature-256)"
    UNSIGNED = "unsigned", "UNSIGNED - anyone with the URL can start runs"


def _default_max_body() -> int:
    return int(settings.ZYRA_WEBHOOK_DEFAULT_MAX_BODY)


def _default_rate() -> int:
    return int(settings.ZYRA_WEBHOOK_DEFAULT_RATE_PER_S)


class WebhookEndpoint(models.Model):
    """``POST /hooks/{token}/`` for one WEBHOOK trigger node of one workflow."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="webhook_endpoints")
    node_id = models.CharField(max_length=200)
    token = models.CharField(max_length=64, unique=True, default=new_token)
    signing_scheme = models.CharField(max_length=24, choices=SigningScheme.choices, default=SigningScheme.STANDARD_WEBHOOKS)
    # Vault secrets of the workflow owner; any of them verifies (several during a rotation).
    signing_secrets = models.ManyToManyField("secrets_vault.Secret", blank=True, related_name="+")
    # Names of the owner's vault secrets given in the node config (``secret_name``);
    # looked up at delivery time, so a secret created after the save still counts.
    secret_names = models.JSONField(default=list, blank=True)
    max_body_bytes = models.PositiveIntegerField(default=_default_max_body)
    rate_limit_per_s = models.PositiveIntegerField(default=_default_rate)  # 0 = no limit
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "node_id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "node_id"], name="webhook_endpoint_node_unique")]

    def __str__(self) -> str:
        return f"webhook {self.workflow_id}/{self.node_id} ({self.signing_scheme})"

    @property
    def path(self) -> str:
        return f"/hooks/{self.token}/"


class WebhookDelivery(models.Model):
    """One accepted delivery id per endpoint: the unique constraint rejects replays."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=200)
    run_id = models.UUIDField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "delivery_id"], name="webhook_delivery_unique")]

    def __str__(self) -> str:
        return f"{self.endpoint_id}:{self.delivery_id}"


class Schedule(models.Model):
    """A SCHEDULE trigger node's timetable. ``next_run_at`` drives the beat task."""

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="schedules")
    node_id = models.CharField(max_length=200)
    cron = models.CharField(max_length=200, blank=True, default="")
    interval_s = models.FloatField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    inputs = models.JSONField(default=dict, blank=True)
    start_at = models.DateTimeField(null=True, blank=True)
    end_at = models.DateTimeField(null=True, blank=True)
    # False: ticks missed while nothing ran collapse into one run. True: each
    # missed tick runs (at most ZYRA_SCHEDULE_MAX_CATCH_UP).
    catch_up = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_id = models.UUIDField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "node_id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "node_id"], name="schedule_node_unique")]
        indexes = [models.Index(fields=["enabled", "next_run_at"], name="schedule_due_idx")]

    def __str__(self) -> str:
        return f"schedule {self.workflow_id}/{self.node_id} ({self.cron or f'every {self.interval_s}s'})"

    def config(self) -> dict[str, object]:
        out: dict[str, object] = {"timezone": self.timezone}
        if self.cron:
            out["cron"] = self.cron
        elif self.interval_s:
            out["interval_s"] = self.interval_s
        return out
