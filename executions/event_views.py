"""``GET /api/runs/{id}/events/?after=<seq>&limit=<n>``: the stored event log.

Cursor pagination by ``seq``: a page holds the events with ``seq > after``
in order, and ``next`` is the same URL with ``after`` set to the page's last
seq (null when nothing more is stored yet). Payloads are exactly those the
WebSocket streams send (DESIGN §6).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.broadcast import run_events_after
from executions.models import Run
from zyra.errors import ErrorDetail, NotFound, ZyraError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def _int_param(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value: int | None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        message = f"{name} must be an integer {bound}."
        raise ZyraError("validation_error", "The request is invalid.", [ErrorDetail(f"/{name}", "invalid", message)], 400)
    return value


def run_for_user(*, run_id: UUID, user: Any) -> dict[str, Any]:
    """The run's facts if ``user`` may see it; other users' runs are 404 (DESIGN §7)."""
    qs = Run.objects.filter(id=run_id)
    if not user.is_staff:
        qs = qs.filter(owner_id=user.pk)
    row = qs.values("id", "workflow_id", "status", "event_seq").first()
    if row is None:
        raise NotFound("Run not found.")
    return dict(row)


class RunEventsView(APIView):
    @extend_schema(
        summary="Stored events of a run after a sequence number",
        parameters=[
            OpenApiParameter("after", OpenApiTypes.INT, description="Return events with seq greater than this (default 0)."),
            OpenApiParameter("limit", OpenApiTypes.INT, description=f"Page size, 1..{MAX_LIMIT} (default {DEFAULT_LIMIT})."),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, run_id: UUID) -> Response:
        after = _int_param(request, "after", 0, 0, None)
        limit = _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        run = run_for_user(run_id=run_id, user=request.user)
        rows = run_events_after(run_id=run["id"], workflow_id=run["workflow_id"], after=after, limit=limit + 1)
        has_more = len(rows) > limit
        results = rows[:limit]
        last_seq = results[-1]["seq"] if results else after
        next_url = None
        if has_more:
            params = request.query_params.copy()
            params["after"] = str(last_seq)
            params["limit"] = str(limit)
            next_url = request.build_absolute_uri(request.path + "?" + params.urlencode())
        return Response(
            {
                "run_id": str(run["id"]),
                "run_status": run["status"],
                "after": after,
                "last_seq": last_seq,
                "next": next_url,
                "results": results,
            }
        )
