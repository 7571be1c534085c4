from django.urls import path

from secrets_vault import api

urlpatterns = [
    path("secrets/", api.SecretListView.as_view(), name="secret-list"),
    path("secrets/<str:ref>/", api.SecretDetailView.as_view(), name="secret-detail"),
]
