from __future__ import annotations

from django.urls import path

from apps.core.placeholder import placeholder

app_name = "teams"
urlpatterns = [path("", placeholder, name="list")]
