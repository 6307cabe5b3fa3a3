from __future__ import annotations

from django.urls import path

from . import views

app_name = "inventory"
urlpatterns = [
    path("gpus/", views.gpu_type_list, name="gpu_types"),
    path("gpus/new/", views.gpu_type_create, name="gpu_type_create"),
    path("gpus/<int:pk>/edit/", views.gpu_type_edit, name="gpu_type_edit"),
    path("gpus/<int:pk>/delete/", views.gpu_type_delete, name="gpu_type_delete"),
    path("gpus/<int:pk>/prices/new/", views.gpu_price_add, name="gpu_price_add"),
    path("gpus/prices/<int:pk>/delete/", views.gpu_price_delete, name="gpu_price_delete"),
    path("clusters/", views.cluster_list, name="clusters"),
    path("clusters/new/", views.cluster_create, name="cluster_create"),
    path("clusters/<int:pk>/", views.cluster_detail, name="cluster_detail"),
    path("clusters/<int:pk>/edit/", views.cluster_edit, name="cluster_edit"),
    path("clusters/<int:pk>/delete/", views.cluster_delete, name="cluster_delete"),
    path("clusters/<int:pk>/inventory/", views.cluster_inventory_set, name="cluster_inventory_set"),
]
