"""Admin for circuit breakers (state, counts, open-until, last failure, reset) and per-service policies."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from executions.models import CircuitBreaker, ServicePolicy
from executions.resilience.breaker import breaker_reset
from executions.resilience.selectors import circuit_window_counts

__all__ = ["CircuitBreakerAdmin", "ServicePolicyAdmin"]


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(admin.ModelAdmin):
    list_display = (
        "key",
        "state",
        "window_calls",
        "window_failures",
        "total_calls",
        "total_failures",
        "consecutive_opens",
        "open_until",
        "last_failure_at",
        "short_failure",
    )
    list_filter = ("state",)
    search_fields = ("key",)
    actions = ["reset_selected"]
    readonly_fields = (
        "key",
        "state",
        "window",
        "total_calls",
        "total_failures",
        "consecutive_opens",
        "opened_at",
        "open_until",
        "probe_lease_until",
        "probe_token",
        "last_failure_at",
        "last_failure",
        "updated_at",
    )

    def _counts(self, obj: CircuitBreaker) -> dict[str, Any]:
        return circuit_window_counts(obj, window_s=int(settings.ZYRA_BREAKER_WINDOW_S))

    @admin.display(description="calls in window")
    def window_calls(self, obj: CircuitBreaker) -> int:
        return int(self._counts(obj)["calls"])

    @admin.display(description="failures in window")
    def window_failures(self, obj: CircuitBreaker) -> int:
        return int(self._counts(obj)["failures"])

    @admin.display(description="last failure")
    def short_failure(self, obj: CircuitBreaker) -> str:
        return (obj.last_failure or "")[:80]

    @admin.action(description="Reset (close) the selected circuit breakers")
    def reset_selected(self, request: HttpRequest, queryset: QuerySet[CircuitBreaker]) -> None:
        keys = list(queryset.values_list("key", flat=True))
        for key in keys:
            breaker_reset(key=key, actor=str(request.user))
        self.message_user(request, f"Reset {len(keys)} circuit breaker(s).", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # rows appear with the first call to a service


@admin.register(ServicePolicy)
class ServicePolicyAdmin(admin.ModelAdmin):
    list_display = ("key", "rate_per_s", "burst", "failure_rate_threshold", "minimum_calls", "window_s", "open_wait_s", "updated_at")
    search_fields = ("key",)
