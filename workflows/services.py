"""Writes of workflows: create, save (a changed definition is a new version), archive.

Every write validates the whole definition first and stores nothing when it is
invalid; errors carry JSON pointers into the definition (the API prefixes them
with ``/definition``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from workflows.definition import checksum, normalize
from workflows.models import Workflow, WorkflowVersion
from workflows.validation import validate_definition
from zyra.errors import ErrorDetail, ZyraError

log = logging.getLogger("workflows.services")


def definition_size(definition: Any) -> int:
    """Bytes of the definition as compact UTF-8 JSON (what the cap measures)."""
    return len(json.dumps(definition, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def definition_check(*, definition: Any, owner: Any = None) -> dict[str, Any]:
    """The canonical form of a valid definition; raises ZyraError listing every problem."""
    cap = int(settings.ZYRA_MAX_DEFINITION_BYTES)
    size = definition_size(definition)
    if size > cap:
        message = f"The definition is {size} bytes; at most {cap} are allowed."
        raise ZyraError("definition_too_large", message, [ErrorDetail("", "definition_too_large", message)], 413)
    errors = validate_definition(definition, owner=owner)
    if errors:
        noun = "problem" if len(errors) == 1 else "problems"
        raise ZyraError("invalid_definition", f"The definition has {len(errors)} {noun}.", errors, 400)
    return normalize(definition)


def _version_create(*, workflow: Workflow, number: int, submitted: Any, canonical: dict[str, Any], user: Any) -> WorkflowVersion:
    return WorkflowVersion.objects.create(
        workflow=workflow,
        number=number,
        definition=canonical,
        submitted=submitted,
        submitted_text=json.dumps(submitted, ensure_ascii=False),
        checksum=checksum(canonical),
        created_by=user,
    )


@transaction.atomic
def workflow_create(
    *,
    owner: Any,
    name: str,
    definition: Any,
    description: str = "",
    tags: Sequence[str] | None = None,
) -> Workflow:
    canonical = definition_check(definition=definition, owner=owner)
    workflow = Workflow.objects.create(owner=owner, name=name, description=description, tags=list(tags or []))
    version = _version_create(workflow=workflow, number=1, submitted=definition, canonical=canonical, user=owner)
    workflow.current_version = version
    workflow.save(update_fields=["current_version", "updated_at"])
    _triggers_sync(workflow)
    log.info("workflows.created workflow_id=%s version=1 nodes=%d", workflow.pk, len(canonical["nodes"]))
    return workflow


@transaction.atomic
def workflow_update(
    *,
    workflow: Workflow,
    user: Any,
    name: str | None = None,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    definition: Any = None,
    replace_definition: bool = False,
) -> Workflow:
    """Save changes. A definition whose canonical form (checksum) differs from
    the current version's becomes a new version; an identical one does not.

    ``definition=None`` leaves the definition alone unless ``replace_definition``
    (a JSON ``null`` is then validated, and rejected, like any other value).
    """
    # The row lock serialises concurrent saves, so version numbers never collide.
    locked = Workflow.objects.select_for_update(of=("self",)).select_related("current_version").get(pk=workflow.pk)
    fields: list[str] = []
    if definition is not None or replace_definition:
        canonical = definition_check(definition=definition, owner=locked.owner)
        current = locked.current_version
        if current is None or current.checksum != checksum(canonical):
            last = WorkflowVersion.objects.filter(workflow=locked).aggregate(n=Max("number"))["n"] or 0
            version = _version_create(workflow=locked, number=last + 1, submitted=definition, canonical=canonical, user=user)
            locked.current_version = version
            fields.append("current_version")
            log.info("workflows.versioned workflow_id=%s version=%d", locked.pk, version.number)
    if name is not None and name != locked.name:
        locked.name = name
        fields.append("name")
    if description is not None and description != locked.description:
        locked.description = description
        fields.append("description")
    if tags is not None and list(tags) != locked.tags:
        locked.tags = list(tags)
        fields.append("tags")
    if fields:
        locked.save(update_fields=[*fields, "updated_at"])
    if "current_version" in fields:
        _triggers_sync(locked)
    return locked


def _triggers_sync(workflow: Workflow) -> None:
    """Webhook endpoints and schedules follow the current version (same transaction)."""
    from triggers.services import triggers_sync

    triggers_sync(workflow)


@transaction.atomic
def workflow_archive(*, workflow: Workflow, user: Any = None) -> Workflow:
    """Archive instead of deleting: versions and runs keep pointing at it."""
    locked = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if locked.is_active:
        locked.is_active = False
        locked.archived_at = timezone.now()
        locked.save(update_fields=["is_active", "archived_at", "updated_at"])
        _triggers_sync(locked)  # an archived workflow's endpoints and schedules stop
        log.info("workflows.archived workflow_id=%s by=%s", locked.pk, getattr(user, "pk", None))
    return locked
