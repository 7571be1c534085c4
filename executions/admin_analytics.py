"""Operator dashboard at /admin/analytics/: the analytics figures as server-rendered SVG charts.

No JavaScript and no CDN: the charts are SVG built here, every label escaped.
The page also shows the feature flags and caps the web process runs with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from executions import analytics
from executions.models import DailyWorkflowStats
from zyra.errors import ZyraError

COLOURS = {"succeeded": "#2e7d32", "partially_succeeded": "#f9a825", "failed": "#c62828", "timed_out": "#6a1b9a", "cancelled": "#757575"}
CAPS = (
    "ZYRA_MAX_NODES",
    "ZYRA_MAX_DEFINITION_BYTES",
    "ZYRA_MAX_INPUT_BYTES",
    "ZYRA_MAX_OUTPUT_BYTES",
    "ZYRA_EVENT_OUTPUT_BYTES",
    "DATA_UPLOAD_MAX_MEMORY_SIZE",
    "ZYRA_DEFAULT_MAX_PARALLEL",
    "ZYRA_RETENTION_DAYS",
)


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def svg_stacked_bars(
    buckets: Sequence[dict[str, Any]], keys: Sequence[str], *, width: int = 860, height: int = 220, label_every: int = 1
) -> SafeString:
    """One stacked bar per bucket (runs by outcome), a y axis with the maximum, every bar titled."""
    left, bottom, top = 40, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max([sum(int(b.get(k, 0)) for k in keys) for b in buckets] + [1])
    step = plot_w / max(len(buckets), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="zyra-chart" width="{width}" height="{height}" role="img">',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 10}" font-size="10" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for i, b in enumerate(buckets):
        x = left + i * step + step * 0.1
        y = float(top + plot_h)
        for key in keys:
            value = int(b.get(key, 0))
            if value:
                h = plot_h * value / peak
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" fill="{COLOURS.get(key, "#1565c0")}">'
                    f"<title>{escape(str(b.get('bucket', '')))} {escape(key)}: {value}</title></rect>"
                )
        if i % label_every == 0:
            label = str(b.get("bucket", ""))[5:16].replace("T00:00", "").replace("T", " ")
            parts.append(f'<text x="{x + step * 0.4:.1f}" y="{height - 12}" font-size="9" text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated text is escaped above


def svg_line(points: Sequence[tuple[str, float | None]], *, width: int = 860, height: int = 160, colour: str = "#1565c0") -> SafeString:
    left, bottom, top = 60, 24, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    values = [v for _, v in points if v is not None]
    peak = max([*values, 1.0])
    step = plot_w / max(len(points) - 1, 1)
    coords = []
    dots = []
    for i, (label, v) in enumerate(points):
        if v is None:
            continue
        x, y = left + i * step, top + plot_h - plot_h * v / peak
        coords.append(f"{x:.1f},{y:.1f}")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{escape(label)}: {escape(_fmt(v))}</title></circle>')
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="zyra-chart" width="{width}" height="{height}" role="img">',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
        f'<text x="{left - 4}" y="{top + 10}" font-size="10" text-anchor="end">{escape(_fmt(peak))}</text>',
    ]
    if coords:
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(coords)}"/>')
    parts += dots
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - labels escaped


def svg_hbars(rows: Sequence[tuple[str, float, str]], *, width: int = 860, unit: str = "") -> SafeString:
    """Horizontal bars: (label, value, tooltip)."""
    bar_h, label_w = 18, 220
    height = max(len(rows), 1) * (bar_h + 6) + 6
    peak = max([v for _, v, _ in rows] + [1.0])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="zyra-chart" width="{width}" height="{height}" role="img">']
    for i, (label, value, tip) in enumerate(rows):
        y = 6 + i * (bar_h + 6)
        w = (width - label_w - 90) * value / peak
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#1565c0"><title>{escape(tip)}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="11">{escape(f"{value:g}{unit}")}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - labels escaped


def _percent(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f} %"


def analytics_dashboard(request: HttpRequest) -> HttpResponse:
    params: dict[str, str] = {k: str(v) for k, v in request.GET.items() if k in {"from", "to", "bucket"} and v}
    errors: list[str] = []
    try:
        scope = analytics.scope_from_query(params=params, user=request.user, allow=("from", "to", "bucket"))
    except ZyraError as exc:
        errors = [f"{d.path}: {d.message}" for d in exc.details]
        scope = analytics.scope_from_query(params={}, user=request.user)
    summary = analytics.analytics_workflow(scope=scope)
    per_wf = analytics.analytics_workflows(scope=scope)["workflows"]
    series = summary["series"]
    label_every = max(1, len(series) // 24)
    keys = ("succeeded", "partially_succeeded", "failed", "timed_out", "cancelled")
    node_rows = [
        (
            t["type"],
            float(t["node_runs"]),
            (f"{t['type']}: {t['node_runs']} node runs, failure rate {_percent(t['failure_rate'])}, p95 {_fmt(t['duration_ms']['p95'])}"),
        )
        for t in summary["node_types"]
    ]
    fail_rows = [
        (t["type"], round((t["failure_rate"] or 0) * 100, 1), f"{t['type']}: {t['failed'] + t['timed_out']} failed")
        for t in summary["node_types"]
    ]
    deferred_rows = [(reason, float(ms), f"{reason}: {ms} ms") for reason, ms in summary["deferred_ms"]["by_reason"].items()]
    context = {
        **admin.site.each_context(request),
        "title": "Run analytics",
        "errors": errors,
        "scope": {"from": summary["from"], "to": summary["to"], "bucket": summary["bucket"]},
        "form": {"from": params.get("from", ""), "to": params.get("to", ""), "bucket": scope.bucket},
        "summary": summary,
        "rates": {k: _percent(summary[k]) for k in ("success_rate", "failure_rate", "partial_rate")},
        "durations": {k: _fmt(summary["duration_ms"][k]) for k in ("p50", "p95", "p99", "avg")},
        "legend": [(k, COLOURS[k]) for k in keys],
        "runs_chart": svg_stacked_bars(series, keys, label_every=label_every),
        "p95_chart": svg_line([(s["bucket"], s["p95_ms"]) for s in series]),
        "node_chart": svg_hbars(node_rows),
        "node_fail_chart": svg_hbars(fail_rows, unit=" %"),
        "deferred_chart": svg_hbars(deferred_rows, unit=" ms") if deferred_rows else None,
        "workflows": [
            {
                **w,
                "rates": {k: _percent(w[k]) for k in ("success_rate", "failure_rate", "partial_rate")},
                "p95": _fmt(w["duration_ms"]["p95"]),
            }
            for w in per_wf
        ],
        "flags": sorted(settings.ZYRA_FEATURES.items()),
        "caps": [(name, getattr(settings, name, None)) for name in CAPS],
        "api_url": "/api/analytics/?" + "&".join(f"{k}={v}" for k, v in params.items()),
        "node_types": [
            {
                **t,
                "fail": _percent(t["failure_rate"]),
                "p50": _fmt(t["duration_ms"]["p50"]),
                "p95": _fmt(t["duration_ms"]["p95"]),
                "p99": _fmt(t["duration_ms"]["p99"]),
            }
            for t in summary["node_types"]
        ],
    }
    return TemplateResponse(request, "admin/executions/analytics.html", context)


# Staff only, with the admin's login redirect and CSRF/caching rules.
analytics_view = admin.site.admin_view(analytics_dashboard)


@admin.register(DailyWorkflowStats)
class DailyWorkflowStatsAdmin(admin.ModelAdmin):
    """Archived days (written by retention): read-only, like the runs they summarise."""

    list_display = (
        "day",
        "workflow",
        "runs",
        "succeeded",
        "failed",
        "partially_succeeded",
        "timed_out",
        "cancelled",
        "node_runs",
        "nodes_retried",
    )
    list_filter = ("day",)
    search_fields = ("workflow__name",)
    date_hierarchy = "day"
    list_select_related = ("workflow",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
