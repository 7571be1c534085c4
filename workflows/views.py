"""Workflow API views: thin, they parse, call a selector or a service, serialise.

Every object lookup goes through the owner-scoped selectors, so another
user's workflow answers 404 exactly like a missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from workflows import selectors, services
from workflows.schema import definition_schema, node_type_registry
from workflows.serializers import (
    ErrorSerializer,
    NodeTypeSerializer,
    ValidateRequestSerializer,
    ValidateResponseSerializer,
    WorkflowSerializer,
    WorkflowVersionDetailSerializer,
    WorkflowVersionSerializer,
    WorkflowWriteSerializer,
)
from workflows.validation import validate_definition
from zyra.errors import ErrorDetail, ZyraError
from zyra.parsers import MAX_BODY_DEPTH, StrictJSONParser, _bad_body  # noqa: F401 - re-exported


@contextmanager
def _definition_errors_at(prefix: str) -> Iterator[None]:
    """Service errors point into the definition; the client wants pointers into its body."""
    try:
        yield
    except ZyraError as exc:
        if exc.code not in {"invalid_definition", "definition_too_large"}:
            raise
        details = [ErrorDetail(prefix + d.path, d.code, d.message) for d in exc.details]
        raise ZyraError(exc.code, exc.message, details, exc.status) from None


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request; details carry JSON pointers into the body"),
    401: OpenApiResponse(ErrorSerializer, description="No or bad credentials"),
    403: OpenApiResponse(ErrorSerializer, description="Forbidden"),
    404: OpenApiResponse(ErrorSerializer, description="Not found (or another user's workflow)"),
    405: OpenApiResponse(ErrorSerializer, description="Method not allowed"),
    406: OpenApiResponse(ErrorSerializer, description="Not acceptable"),
    413: OpenApiResponse(ErrorSerializer, description="Body or definition too large"),
    415: OpenApiResponse(ErrorSerializer, description="Unsupported media type"),
}
READ_ERRORS = {k: v for k, v in ERRORS.items() if k in {400, 401, 403, 404, 405, 406}}
WORKFLOW_ID = OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)
EXAMPLE_DEFINITION = {
    "nodes": [
        {"id": "start", "type": "MANUAL", "position": {"x": 0, "y": 0}, "data": {"label": "Start", "config": {}}},
        {
            "id": "fetch",
            "type": "custom",
            "position": {"x": 250, "y": 0},
            "data": {
                "blockType": "HTTP_REQUEST",
                "label": "Fetch order",
                "config": {"url": "https://api.example.com/orders/{{ input.order_id }}"},
            },
        },
        {"id": "check", "type": "CONDITION", "data": {"config": {"expression": "{{ nodes.fetch.output.status == 200 }}"}}},
        {"id": "ok", "type": "EMAIL", "data": {"config": {"to": "ops@example.com", "subject": "Order {{ input.order_id }} found"}}},
    ],
    "edges": [
        {"id": "e1", "source": "start", "target": "fetch"},
        {"id": "e2", "source": "fetch", "target": "check"},
        {"id": "e3", "source": "check", "sourceHandle": "true", "target": "ok"},
    ],
    "settings": {"timeout_s": 600, "max_parallel_nodes": 8},
}
CREATE_EXAMPLE = OpenApiExample(
    "A builder document", value={"name": "Order check", "tags": ["orders"], "definition": EXAMPLE_DEFINITION}, request_only=True
)
VALIDATE_EXAMPLES = [
    OpenApiExample("Validate a document", value={"definition": EXAMPLE_DEFINITION}, request_only=True),
    OpenApiExample(
        "Invalid",
        value={"valid": False, "errors": [{"path": "/definition/edges/2/sourceHandle", "code": "invalid_handle", "message": "..."}]},
        response_only=True,
    ),
]


class _Base(GenericAPIView):
    parser_classes = [StrictJSONParser]

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, RequestDataTooBig):
            message = f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
            exc = ZyraError("body_too_large", message, [ErrorDetail("", "body_too_large", message)], 413)
        return super().handle_exception(exc)


class WorkflowListView(_Base):
    serializer_class = WorkflowSerializer

    @extend_schema(operation_id="workflows_list", responses={200: WorkflowSerializer(many=True), **READ_ERRORS})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(selectors.workflow_list(user=request.user))
        return self.get_paginated_response(WorkflowSerializer(page, many=True).data)

    @extend_schema(
        operation_id="workflows_create",
        request=WorkflowWriteSerializer,
        examples=[CREATE_EXAMPLE],
        responses={201: WorkflowSerializer, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        body = WorkflowWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with _definition_errors_at("/definition"):
            workflow = services.workflow_create(
                owner=request.user,
                name=data["name"],
                description=data.get("description", ""),
                tags=data.get("tags", []),
                definition=data["definition"],
            )
        return Response(WorkflowSerializer(workflow).data, status=status.HTTP_201_CREATED)


class WorkflowDetailView(_Base):
    serializer_class = WorkflowSerializer

    @extend_schema(operation_id="workflows_retrieve", parameters=[WORKFLOW_ID], responses={200: WorkflowSerializer, **READ_ERRORS})
    def get(self, request: Request, pk: str) -> Response:
        workflow = selectors.workflow_get(user=request.user, workflow_id=pk)
        return Response(WorkflowSerializer(workflow).data)

    @extend_schema(
        operation_id="workflows_update",
        parameters=[WORKFLOW_ID],
        request=WorkflowWriteSerializer,
        responses={200: WorkflowSerializer, **ERRORS},
        description="Replace name, description, tags and definition. A changed definition becomes a new version.",
    )
    def put(self, request: Request, pk: str) -> Response:
        return self._save(request, pk, partial=False)

    @extend_schema(
        operation_id="workflows_partial_update",
        parameters=[WORKFLOW_ID],
        request=WorkflowWriteSerializer(partial=True),
        responses={200: WorkflowSerializer, **ERRORS},
        description="Change some fields. A changed definition becomes a new version.",
    )
    def patch(self, request: Request, pk: str) -> Response:
        return self._save(request, pk, partial=True)

    def _save(self, request: Request, pk: str, *, partial: bool) -> Response:
        workflow = selectors.workflow_get(user=request.user, workflow_id=pk)
        body = WorkflowWriteSerializer(data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        with _definition_errors_at("/definition"):
            workflow = services.workflow_update(
                workflow=workflow,
                user=request.user,
                name=data.get("name"),
                description=data.get("description"),
                tags=data.get("tags"),
                definition=data.get("definition"),
                replace_definition="definition" in data,
            )
        return Response(WorkflowSerializer(workflow).data)

    @extend_schema(operation_id="workflows_destroy", parameters=[WORKFLOW_ID], responses={204: None, **READ_ERRORS})
    def delete(self, request: Request, pk: str) -> Response:
        workflow = selectors.workflow_get(user=request.user, workflow_id=pk)
        services.workflow_archive(workflow=workflow, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkflowVersionListView(_Base):
    serializer_class = WorkflowVersionSerializer

    @extend_schema(
        operation_id="workflows_versions_list",
        parameters=[WORKFLOW_ID],
        responses={200: WorkflowVersionSerializer(many=True), **READ_ERRORS},
    )
    def get(self, request: Request, pk: str) -> Response:
        workflow = selectors.workflow_get(user=request.user, workflow_id=pk)
        page = self.paginate_queryset(selectors.workflow_version_list(workflow=workflow))
        return self.get_paginated_response(WorkflowVersionSerializer(page, many=True).data)


class WorkflowVersionDetailView(_Base):
    serializer_class = WorkflowVersionDetailSerializer

    @extend_schema(
        operation_id="workflows_versions_retrieve",
        parameters=[WORKFLOW_ID, OpenApiParameter("number", OpenApiTypes.INT, OpenApiParameter.PATH)],
        responses={200: WorkflowVersionDetailSerializer, **READ_ERRORS},
    )
    def get(self, request: Request, pk: str, number: int) -> Response:
        workflow = selectors.workflow_get(user=request.user, workflow_id=pk)
        version = selectors.workflow_version_get(workflow=workflow, number=number)
        return Response(WorkflowVersionDetailSerializer(version).data)


class WorkflowValidateView(_Base):
    serializer_class = ValidateRequestSerializer

    @extend_schema(
        operation_id="workflows_validate",
        request=ValidateRequestSerializer,
        examples=VALIDATE_EXAMPLES,
        responses={200: ValidateResponseSerializer, **ERRORS},
        description="Validate a definition without storing it. Error paths point into the request body (/definition/...).",
    )
    def post(self, request: Request) -> Response:
        body = ValidateRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        definition = body.validated_data["definition"]
        cap = int(settings.ZYRA_MAX_DEFINITION_BYTES)
        if services.definition_size(definition) > cap:
            errors = [ErrorDetail("/definition", "definition_too_large", f"The definition is larger than {cap} bytes.")]
        else:
            errors = [ErrorDetail("/definition" + e.path, e.code, e.message) for e in validate_definition(definition, owner=request.user)]
        return Response({"valid": not errors, "errors": [e.as_dict() for e in errors]})


class NodeTypeListView(_Base):
    serializer_class = NodeTypeSerializer
    pagination_class = None

    @extend_schema(operation_id="node_types_list", responses={200: NodeTypeSerializer(many=True), **READ_ERRORS})
    def get(self, request: Request) -> Response:
        return Response(node_type_registry())


class DefinitionSchemaView(_Base):
    pagination_class = None

    @extend_schema(
        operation_id="workflows_schema",
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="JSON Schema (2020-12) of a workflow definition"), **READ_ERRORS},
    )
    def get(self, request: Request) -> Response:
        return Response(definition_schema())
