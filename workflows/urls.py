from __future__ import annotations

from django.urls import URLPattern, path

from workflows import views

urlpatterns: list[URLPattern] = [
    path("workflows/", views.WorkflowListView.as_view(), name="workflow-list"),
    path("workflows/validate/", views.WorkflowValidateView.as_view(), name="workflow-validate"),
    path("workflows/schema/", views.DefinitionSchemaView.as_view(), name="workflow-schema"),
    path("workflows/<uuid:pk>/", views.WorkflowDetailView.as_view(), name="workflow-detail"),
    path("workflows/<uuid:pk>/versions/", views.WorkflowVersionListView.as_view(), name="workflow-versions"),
    path("workflows/<uuid:pk>/versions/<int:number>/", views.WorkflowVersionDetailView.as_view(), name="workflow-version-detail"),
    path("node-types/", views.NodeTypeListView.as_view(), name="node-type-list"),
]
