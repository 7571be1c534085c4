from django.urls import URLPattern, URLResolver, path

from executions import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("workflows/<uuid:workflow_id>/runs/", views.WorkflowRunsView.as_view(), name="workflow-runs"),
    path("runs/", views.RunListView.as_view(), name="run-list"),
    path("runs/<uuid:run_id>/", views.RunDetailView.as_view(), name="run-detail"),
    path("runs/<uuid:run_id>/cancel/", views.RunActionView.as_view(action_name="cancel"), name="run-cancel"),
    path("runs/<uuid:run_id>/resume/", views.RunActionView.as_view(action_name="resume"), name="run-resume"),
    path("runs/<uuid:run_id>/retry/", views.RunActionView.as_view(action_name="retry"), name="run-retry"),
]

# Event log (live monitoring, executions/event_views.py).
from executions.event_views import RunEventsView  # noqa: E402

urlpatterns += [path("runs/<uuid:run_id>/events/", RunEventsView.as_view(), name="run-events")]

# Analytics (executions/analytics_urls.py).
from django.urls import include  # noqa: E402

urlpatterns += [path("", include("executions.analytics_urls"))]
