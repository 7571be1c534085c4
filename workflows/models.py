from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.db import models


class Workflow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="workflows")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    tags = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    current_version = models.ForeignKey("WorkflowVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    # Resource limit: runs of this workflow running at once (0 = no limit).
    max_concurrent_runs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "is_active", "-created_at"])]

    def __str__(self) -> str:
        return self.name


class WorkflowVersion(models.Model):
    """Immutable: a save that changes the definition creates a new row."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()  # canonical (normalised) form: what the engine runs
    submitted = models.JSONField()  # the document as the builder sent it (jsonb: key order not kept)
    # The same document as JSON text, so it comes back with the builder's own key order.
    submitted_text = models.TextField(blank=True, default="")
    checksum = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_unique")]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not kwargs.pop("force_rewrite", False):
            raise ValueError("WorkflowVersion rows are immutable")
        super().save(*args, **kwargs)

    @property
    def submitted_document(self) -> Any:
        if self.submitted_text:
            return json.loads(self.submitted_text)
        return self.submitted
