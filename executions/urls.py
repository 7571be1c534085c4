from django.urls import path  # noqa: F401

urlpatterns: list = []

from executions.event_views import RunEventsView  # noqa: E402

urlpatterns += [path("runs/<uuid:run_id>/events/", RunEventsView.as_view(), name="run-events")]
