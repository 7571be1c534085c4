"""Analytics endpoints (DESIGN §7 ``GET /api/analytics/...``). Thin: parse the query, call a selector."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import analytics
from workflows.models import Workflow
from zyra.errors import NotFound

_RANGE = [
    OpenApiParameter("from", OpenApiTypes.STR, description="ISO 8601 date or datetime, inclusive (default: to - 7 days)"),
    OpenApiParameter("to", OpenApiTypes.STR, description="ISO 8601 date (whole day included) or datetime, exclusive (default: now)"),
    OpenApiParameter("bucket", OpenApiTypes.STR, enum=list(analytics.BUCKETS), description="series bucket (default day)"),
]
_ERRORS = {
    400: OpenApiResponse(description="invalid query: details point at /query/<name>"),
    401: OpenApiResponse(description="no or bad credentials"),
    404: OpenApiResponse(description="not found"),
}


def _visible_workflow(request: Request, workflow_id: Any) -> Workflow:
    qs = Workflow.objects.all() if request.user.is_staff else Workflow.objects.filter(owner_id=request.user.pk)
    wf = qs.filter(id=workflow_id).first()
    if wf is None:
        raise NotFound("Workflow not found.")
    return wf


class AnalyticsSummaryView(APIView):
    @extend_schema(operation_id="analytics_summary", parameters=_RANGE, responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request) -> Response:
        """Every figure over all of the caller's runs (staff: everyone's)."""
        scope = analytics.scope_from_query(params=request.query_params, user=request.user, allow=("from", "to", "bucket"))
        return Response(analytics.analytics_workflow(scope=scope))


class AnalyticsWorkflowsView(APIView):
    @extend_schema(
        operation_id="analytics_workflows",
        parameters=[*_RANGE, OpenApiParameter("limit", OpenApiTypes.INT, description="workflows listed (1-1000, default 100)")],
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        scope = analytics.scope_from_query(params=request.query_params, user=request.user, allow=("from", "to", "bucket", "limit"))
        return Response(analytics.analytics_workflows(scope=scope))


class AnalyticsWorkflowView(APIView):
    @extend_schema(operation_id="analytics_workflow", parameters=_RANGE, responses={200: OpenApiTypes.OBJECT, **_ERRORS})
    def get(self, request: Request, workflow_id: Any) -> Response:
        wf = _visible_workflow(request, workflow_id)
        scope = analytics.scope_from_query(
            params=request.query_params, user=request.user, workflow_id=wf.id, allow=("from", "to", "bucket")
        )
        data = analytics.analytics_workflow(scope=scope)
        return Response({"workflow_id": str(wf.id), "name": wf.name, **data})


class AnalyticsNodeTypesView(APIView):
    @extend_schema(
        operation_id="analytics_node_types",
        parameters=[*_RANGE, OpenApiParameter("workflow", OpenApiTypes.UUID, description="only this workflow's runs")],
        responses={200: OpenApiTypes.OBJECT, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        scope = analytics.scope_from_query(params=request.query_params, user=request.user, allow=("from", "to", "bucket", "workflow"))
        if scope.workflow_id is not None:
            _visible_workflow(request, scope.workflow_id)
        return Response(analytics.analytics_node_types(scope=scope))
