"""Circuit breakers over the API (staff only): list, and reset one by its (URL-encoded) key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.models import CircuitBreaker
from executions.resilience.breaker import breaker_reset
from executions.resilience.selectors import circuit_list, circuit_window_counts
from zyra.errors import NotFound


class CircuitSerializer(serializers.ModelSerializer):
    window = serializers.SerializerMethodField()

    class Meta:
        model = CircuitBreaker
        fields = [
            "key",
            "state",
            "window",
            "total_calls",
            "total_failures",
            "consecutive_opens",
            "opened_at",
            "open_until",
            "probe_lease_until",
            "last_failure_at",
            "last_failure",
            "updated_at",
        ]

    def get_window(self, obj: CircuitBreaker) -> dict[str, Any]:
        return circuit_window_counts(obj, window_s=int(settings.ZYRA_BREAKER_WINDOW_S))


class CircuitListView(ListAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = CircuitSerializer

    def get_queryset(self) -> Any:
        return circuit_list()


class CircuitResetView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={200: CircuitSerializer})
    def post(self, request: Request, key: str) -> Response:
        # Django has already percent-decoded the path: "http%3A%2F%2Fapi%3A443" arrives as "http://api:443".
        if not breaker_reset(key=key, actor=str(request.user)):
            raise NotFound(f"No circuit breaker for {key!r}.")
        return Response(CircuitSerializer(CircuitBreaker.objects.get(key=key)).data)
