from __future__ import annotations

from django.urls import path

from . import views

app_name = "endpoints"
urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("request/", views.endpoint_request, name="request"),
    path("request/estimate/", views.endpoint_estimate, name="estimate"),
    path("queue/", views.approval_queue, name="queue"),
    path("quota-requests/", views.quota_request_list, name="quota_requests"),
    path("quota-requests/new/", views.quota_request_new, name="quota_request_new"),
    path("quota-requests/<int:pk>/approve/", views.quota_request_approve, name="quota_request_approve"),
    path("quota-requests/<int:pk>/deny/", views.quota_request_deny, name="quota_request_deny"),
    path("<int:pk>/", views.endpoint_detail, name="detail"),
    path("<int:pk>/status/", views.endpoint_status, name="status"),
    path("<int:pk>/change/", views.endpoint_change, name="change"),
    path("<int:pk>/delete/", views.endpoint_delete, name="delete"),
    path("<int:pk>/retry/", views.endpoint_retry, name="retry"),
    path("<int:pk>/try/", views.endpoint_try, name="try"),
    path("<int:pk>/approve/", views.endpoint_approve, name="approve"),
    path("<int:pk>/reject/", views.endpoint_reject, name="reject"),
]
