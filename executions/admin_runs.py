"""Admin for runs: history with filters and duration, node runs and event log inline, link to the live page.

Everything here is read-only: runs change only through the engine's services.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from executions.models import NodeRun, Run, RunEvent


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _ms(value: int | None) -> str:
    if value is None:
        return "—"
    if value < 1000:
        return f"{value} ms"
    return f"{value / 1000:.1f} s"


class NodeRunInline(_ReadOnly, admin.TabularInline):
    model = NodeRun
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("node_id", "type", "status", "attempt", "started_at", "finished_at", "duration", "error")
    readonly_fields = fields
    ordering = ("topo_index",)

    @admin.display(description="duration")
    def duration(self, obj: NodeRun) -> str:
        return _ms(obj.duration_ms)


class RunEventInline(_ReadOnly, admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ("seq", "type", "node_id", "ts", "data")
    readonly_fields = fields
    ordering = ("seq",)
    verbose_name = "event"
    verbose_name_plural = "event log"


@admin.register(Run)
class RunAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("id", "status", "workflow", "version_number", "owner", "trigger", "created_at", "duration", "progress", "live")
    list_filter = ("status", "workflow", ("created_at", admin.DateFieldListFilter), "trigger")
    search_fields = ("id", "workflow__name", "owner__username")
    date_hierarchy = "created_at"
    list_select_related = ("workflow", "version", "owner")
    inlines = [NodeRunInline, RunEventInline]
    readonly_fields = (
        "id",
        "live",
        "workflow",
        "version",
        "owner",
        "status",
        "trigger",
        "priority",
        "idempotency_key",
        "inputs",
        "outputs",
        "error",
        "progress",
        "duration",
        "event_seq",
        "created_at",
        "started_at",
        "finished_at",
        "deadline_at",
        "resumes",
    )
    fields = readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change page is the read-only detail view; with view permission only
        # Django already renders it read-only, staff superusers get the same.
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Run]:
        return super().get_queryset(request).select_related("workflow", "version", "owner")

    @admin.display(description="version")
    def version_number(self, obj: Run) -> int:
        return obj.version.number

    @admin.display(description="duration")
    def duration(self, obj: Run) -> str:
        return _ms(obj.duration_ms)

    @admin.display(description="progress")
    def progress(self, obj: Run) -> str:
        return f"{obj.nodes_done}/{obj.nodes_total}"

    @admin.display(description="live")
    def live(self, obj: Run) -> str:
        return format_html('<a href="{}">live view</a>', reverse("run-live", args=[obj.pk]))


@admin.register(NodeRun)
class NodeRunAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("node_id", "run", "type", "status", "attempt", "started_at", "duration")
    list_filter = ("status", "type")
    search_fields = ("node_id", "run__id")
    list_select_related = ("run",)
    raw_id_fields = ("run",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    @admin.display(description="duration")
    def duration(self, obj: NodeRun) -> str:
        return _ms(obj.duration_ms)


@admin.register(RunEvent)
class RunEventAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("run", "seq", "type", "node_id", "ts")
    list_filter = ("type",)
    search_fields = ("run__id", "node_id")
    raw_id_fields = ("run",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)
