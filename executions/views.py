"""Run endpoints (DESIGN §7). Thin: parse, call a service, serialise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import services
from executions.models import Run, RunStatus
from executions.serializers import RunDetailSerializer, RunStartSerializer, RunSummarySerializer, run_summary
from workflows.models import Workflow
from zyra.errors import ErrorDetail, NotFound, ZyraError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def _user(request: Request) -> User:
    """The request's user: these views sit behind IsAuthenticated (DEFAULT_PERMISSION_CLASSES)."""
    return cast("User", request.user)


def _visible_runs(request: Request) -> QuerySet[Run]:
    qs = Run.objects.select_related("version")
    if not request.user.is_staff:
        qs = qs.filter(owner=_user(request))
    return qs


def _get_run(request: Request, run_id: Any) -> Run:
    run = _visible_runs(request).filter(id=run_id).first()
    if run is None:
        raise NotFound("Run not found.")
    return run


class WorkflowRunsView(APIView):
    @extend_schema(request=RunStartSerializer, responses={202: RunSummarySerializer})
    def post(self, request: Request, workflow_id: Any) -> Response:
        qs = Workflow.objects.all() if request.user.is_staff else Workflow.objects.filter(owner=_user(request))
        workflow = qs.select_related("current_version").filter(id=workflow_id).first()
        if workflow is None:
            raise NotFound("Workflow not found.")
        if not isinstance(request.data, dict):
            raise ZyraError("invalid_body", "the body must be a JSON object.", [ErrorDetail("", "type", "expected an object")])
        ser = RunStartSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        run = services.run_start(
            workflow=workflow,
            inputs=ser.validated_data.get("inputs") or {},
            user=request.user,
            trigger="api",
            idempotency_key=ser.validated_data.get("idempotency_key"),
            priority=9,
        )
        return Response(run_summary(run), status=status.HTTP_202_ACCEPTED)


class RunListView(ListAPIView):
    serializer_class = RunSummarySerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("workflow", str, description="workflow id"),
            OpenApiParameter("status", str, enum=[s.value for s in RunStatus]),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Run]:
        qs = _visible_runs(self.request)
        params = self.request.query_params
        wf = params.get("workflow")
        details = []
        if wf:
            import uuid

            try:
                qs = qs.filter(workflow_id=uuid.UUID(wf))
            except ValueError:
                details.append(ErrorDetail("/query/workflow", "invalid", "not a UUID"))
        st = params.get("status")
        if st:
            if st not in RunStatus.values:
                details.append(ErrorDetail("/query/status", "invalid_choice", f"one of {', '.join(RunStatus.values)}"))
            qs = qs.filter(status=st)
        if details:
            raise ZyraError("invalid_query", "the query parameters are invalid.", details)
        return qs.order_by("-created_at")


class RunDetailView(RetrieveAPIView):
    serializer_class = RunDetailSerializer

    def get_object(self) -> Run:
        run = _get_run(self.request, self.kwargs["run_id"])
        return Run.objects.select_related("version").prefetch_related("node_runs").get(id=run.id)


class RunActionView(APIView):
    action_name = ""

    @extend_schema(request=None, responses={200: RunSummarySerializer})
    def post(self, request: Request, run_id: Any) -> Response:
        run = _get_run(request, run_id)
        if self.action_name == "cancel":
            run = services.run_cancel(run=run)
        elif self.action_name == "resume":
            run = services.run_resume(run=run)
        else:
            run = services.run_retry(run=run)
        run = Run.objects.select_related("version").get(id=run.id)
        return Response(run_summary(run), status=status.HTTP_200_OK)
