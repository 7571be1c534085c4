from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.html import format_html

from triggers.models import Schedule, SigningScheme, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("workflow", "node_id", "signing", "is_active", "rate_limit_per_s", "max_body_bytes", "created_at")
    list_filter = ("signing_scheme", "is_active")
    search_fields = ("workflow__name", "node_id", "token")
    readonly_fields = ("workflow", "node_id", "token", "signing_secrets", "secret_names", "created_at", "updated_at")
    fields = (
        "workflow",
        "node_id",
        "token",
        "signing_scheme",
        "signing_secrets",
        "secret_names",
        "max_body_bytes",
        "rate_limit_per_s",
        "is_active",
        "created_at",
        "updated_at",
    )

    @admin.display(description="signing", ordering="signing_scheme")
    def signing(self, obj: WebhookEndpoint) -> Any:
        if obj.signing_scheme == SigningScheme.UNSIGNED:
            # Unsigned must stand out: anyone holding the URL can start runs.
            return format_html('<strong style="color:#b00">UNSIGNED</strong>')
        return obj.get_signing_scheme_display()


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("endpoint", "delivery_id", "run_id", "received_at")
    readonly_fields = ("endpoint", "delivery_id", "run_id", "received_at")


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    list_display = ("workflow", "node_id", "cron", "interval_s", "timezone", "enabled", "catch_up", "next_run_at", "last_run_at")
    list_filter = ("enabled", "catch_up")
    readonly_fields = ("workflow", "node_id", "last_run_at", "last_run_id", "last_error", "created_at", "updated_at")
