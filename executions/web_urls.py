from django.urls import path

from executions.web_views import live_js, run_live

urlpatterns: list = [
    path("runs/<uuid:run_id>/live/", run_live, name="run-live"),
    path("runs/live.js", live_js, name="run-live-js"),
]
