from __future__ import annotations

from django.urls import path

from apps.core.placeholder import placeholder

app_name = "inventory"
urlpatterns = [
    path("gpus/", placeholder, name="gpu_types"),
    path("clusters/", placeholder, name="clusters"),
]
