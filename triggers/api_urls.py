from django.urls import path

from triggers import api

urlpatterns = [
    path("webhooks/", api.WebhookListView.as_view(), name="webhook-list"),
    path("webhooks/<str:endpoint_id>/", api.WebhookDetailView.as_view(), name="webhook-detail"),
    path("webhooks/<str:endpoint_id>/regenerate-token/", api.WebhookRegenerateTokenView.as_view(), name="webhook-regenerate-token"),
    path("webhooks/<str:endpoint_id>/signing-secrets/", api.WebhookSigningSecretsView.as_view(), name="webhook-signing-secrets"),
    path(
        "webhooks/<str:endpoint_id>/signing-secrets/<int:secret_id>/",
        api.WebhookSigningSecretDetailView.as_view(),
        name="webhook-signing-secret-detail",
    ),
    path("schedules/", api.ScheduleListView.as_view(), name="schedule-list"),
]
