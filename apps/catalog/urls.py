from __future__ import annotations

from django.urls import path

from . import views

app_name = "catalog"
urlpatterns = [
    path("", views.catalog_list, name="list"),
    path("new/", views.catalog_create, name="create"),
    path("<int:pk>/", views.catalog_detail, name="detail"),
    path("<int:pk>/edit/", views.catalog_edit, name="edit"),
    path("<int:pk>/status/", views.catalog_set_status, name="set_status"),
    path("<int:pk>/delete/", views.catalog_delete, name="delete"),
]
