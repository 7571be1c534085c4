from django.urls import path

from executions import analytics_views as views

urlpatterns = [
    path("analytics/", views.AnalyticsSummaryView.as_view(), name="analytics-summary"),
    path("analytics/workflows/", views.AnalyticsWorkflowsView.as_view(), name="analytics-workflows"),
    path("analytics/workflows/<uuid:workflow_id>/", views.AnalyticsWorkflowView.as_view(), name="analytics-workflow"),
    path("analytics/node-types/", views.AnalyticsNodeTypesView.as_view(), name="analytics-node-types"),
]
