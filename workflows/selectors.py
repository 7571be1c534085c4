"""Reads of workflows and their versions, always scoped to the owner.

Another user's workflow is indistinguishable from a missing one (404), so the
API never reveals which ids exist.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet

from workflows.models import Workflow, WorkflowVersion
from zyra.errors import NotFound


def workflow_list(*, user: Any, include_archived: bool = False) -> QuerySet[Workflow]:
    qs = Workflow.objects.filter(owner=user).select_related("current_version")
    if not include_archived:
        qs = qs.filter(is_active=True)
    return qs.order_by("-created_at", "-id")


def workflow_get(*, user: Any, workflow_id: uuid.UUID | str, include_archived: bool = False) -> Workflow:
    try:
        key = workflow_id if isinstance(workflow_id, uuid.UUID) else uuid.UUID(str(workflow_id))
    except ValueError:
        raise NotFound("Workflow not found.") from None
    try:
        return workflow_list(user=user, include_archived=include_archived).get(pk=key)
    except Workflow.DoesNotExist:
        raise NotFound("Workflow not found.") from None


def workflow_version_list(*, workflow: Workflow) -> QuerySet[WorkflowVersion]:
    return WorkflowVersion.objects.filter(workflow=workflow).select_related("created_by").order_by("-number")


def workflow_version_get(*, workflow: Workflow, number: int) -> WorkflowVersion:
    try:
        return workflow_version_list(workflow=workflow).get(number=number)
    except WorkflowVersion.DoesNotExist:
        raise NotFound("Version not found.") from None
