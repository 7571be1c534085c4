"""Operators' view of workflows: versions inline, definitions pretty-printed and read-only."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from workflows.models import Workflow, WorkflowVersion
from workflows.services import workflow_archive


def _pretty(value: Any) -> str:
    return format_html(
        '<pre style="max-height:40em;overflow:auto;white-space:pre">{}</pre>',
        json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False),
    )


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("number", "checksum", "created_by", "created_at")
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "current_version_number", "is_active", "created_at", "updated_at"]
    list_filter = ["is_active", "created_at", "updated_at", "owner"]
    search_fields = ["name", "description", "id", "owner__username", "owner__email"]
    list_select_related = ["owner", "current_version"]
    readonly_fields = ["id", "current_version", "created_at", "updated_at", "archived_at", "definition_pretty", "submitted_pretty"]
    fields = [
        "id",
        "owner",
        "name",
        "description",
        "tags",
        "is_active",
        "archived_at",
        "max_concurrent_runs",
        "current_version",
        "definition_pretty",
        "submitted_pretty",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["owner"]
    inlines = [WorkflowVersionInline]
    date_hierarchy = "created_at"
    actions = ["archive"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # runs pin its versions: archive instead, history stays

    @admin.action(description="Archive selected workflows")
    def archive(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        for workflow in queryset:
            workflow_archive(workflow=workflow, user=request.user)

    @admin.display(description="version", ordering="current_version__number")
    def current_version_number(self, obj: Workflow) -> int | None:
        return obj.current_version.number if obj.current_version else None

    @admin.display(description="definition (canonical, current version)")
    def definition_pretty(self, obj: Workflow) -> str:
        return _pretty(obj.current_version.definition) if obj.current_version else "-"

    @admin.display(description="definition (as submitted, current version)")
    def submitted_pretty(self, obj: Workflow) -> str:
        return _pretty(obj.current_version.submitted) if obj.current_version else "-"


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ["workflow", "number", "checksum", "created_by", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["workflow__name", "workflow__id", "checksum"]
    list_select_related = ["workflow", "created_by"]
    fields = ("workflow", "number", "checksum", "created_by", "created_at", "definition_pretty", "submitted_pretty")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions are made by saving a workflow

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # immutable

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # runs pin versions; history stays

    @admin.display(description="definition (canonical)")
    def definition_pretty(self, obj: WorkflowVersion) -> str:
        return _pretty(obj.definition)

    @admin.display(description="definition (as submitted)")
    def submitted_pretty(self, obj: WorkflowVersion) -> str:
        return _pretty(obj.submitted)
