from django.urls import path

from triggers import views

urlpatterns = [
    path("<str:token>/", views.hook, name="webhook-hook"),
]
