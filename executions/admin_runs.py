"""Admin for runs: history with filters and duration, node runs and event log inline, link to the live page.

Everything here is read-only: runs change only through the engine's services.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
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


EVENT_LOG_INLINE_LIMIT = 500


class RunEventInline(_ReadOnly, admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ("seq", "type", "node_id", "ts", "data")
    readonly_fields = fields
    ordering = ("seq",)
    verbose_name = "event"
    verbose_name_plural = f"event log (last {EVENT_LOG_INLINE_LIMIT}; the full log is linked above)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[RunEvent]:
        # A filter, not a slice (the formset filters by run afterwards): a
        # 5,000-node run has tens of thousands of events.
        qs = super().get_queryset(request)
        run = getattr(request, "_zyra_admin_run", None)
        if run is not None:
            qs = qs.filter(seq__gt=max(0, run.event_seq - EVENT_LOG_INLINE_LIMIT))
        return qs


@admin.register(Run)
class RunAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ("id", "status", "workflow", "version_number", "owner", "trigger", "created_at", "duration", "progress", "live")
    list_filter = ("status", "workflow", ("created_at", admin.DateFieldListFilter), "trigger")
    search_fields = ("id", "workflow__name", "owner__username")
    date_hierarchy = "created_at"
    list_select_related = ("workflow", "version", "owner")
    inlines = [NodeRunInline, RunEventInline]
    actions = ["cancel_runs", "resume_runs", "retry_runs"]
    readonly_fields = (
        "id",
        "live",
        "event_log",
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

    def get_formsets_with_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        request._zyra_admin_run = obj  # type: ignore[attr-defined]  # read by RunEventInline
        return super().get_formsets_with_inlines(request, obj)

    def _act(self, request: HttpRequest, queryset: QuerySet[Run], action: str) -> None:
        """Operator actions go through the engine's services, like the API's."""
        from executions import services
        from zyra.errors import ZyraError

        service = {"cancel": services.run_cancel, "resume": services.run_resume, "retry": services.run_retry}[action]
        done, refused = 0, []
        for run in queryset:
            try:
                service(run=run)
                done += 1
            except ZyraError as exc:
                refused.append(f"{run.pk}: {exc.message}")
        if done:
            self.message_user(request, f"{action.capitalize()}: {done} run(s).", messages.SUCCESS)
        for line in refused[:20]:
            self.message_user(request, f"{action.capitalize()} refused for {line}", messages.WARNING)

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, queryset, "cancel")

    @admin.action(description="Resume selected runs (reuse succeeded nodes)")
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, queryset, "resume")

    @admin.action(description="Retry failed nodes of selected runs")
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, queryset, "retry")

    @admin.display(description="event log")
    def event_log(self, obj: Run) -> str:
        url = reverse("admin:executions_runevent_changelist") + f"?run__id__exact={obj.pk}"
        api = reverse("run-events", args=[obj.pk])
        return format_html('<a href="{}">all {} events</a> · <a href="{}">JSON</a>', url, obj.event_seq, api)

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
    ordering = ("run", "seq")
    search_fields = ("run__id", "node_id")
    raw_id_fields = ("run",)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_active and request.user.is_staff)
