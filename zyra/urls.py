from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from executions.admin_analytics import analytics_view
from zyra import health

urlpatterns = [
    path("admin/analytics/", analytics_view, name="admin-analytics"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("api/", include("workflows.urls")),
    path("api/", include("executions.urls")),
    path("api/", include("secrets_vault.urls")),
    path("api/", include("triggers.api_urls")),
    path("hooks/", include("triggers.urls")),
    path("api/", include("executions.resilience.urls")),
    path("", include("executions.web_urls")),
]

handler404 = "zyra.health.not_found"
handler500 = "zyra.health.server_error"
