from django.urls import path

from executions.resilience import views

urlpatterns = [
    path("circuits/", views.CircuitListView.as_view(), name="circuit-list"),
    path("circuits/<path:key>/reset/", views.CircuitResetView.as_view(), name="circuit-reset"),
]
