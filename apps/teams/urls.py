from __future__ import annotations

from django.urls import path

from . import views

app_name = "teams"
urlpatterns = [
    path("", views.team_list, name="list"),
    # "_" is not allowed in a team slug (DNS-1123), so this can never shadow a team called "new".
    path("_new/", views.team_create, name="create"),
    path("<slug:slug>/", views.team_detail, name="detail"),
    path("<slug:slug>/edit/", views.team_edit, name="edit"),
    path("<slug:slug>/delete/", views.team_delete, name="delete"),
    path("<slug:slug>/members/add/", views.member_add, name="member_add"),
    path("<slug:slug>/members/<int:membership_id>/role/", views.member_role, name="member_role"),
    path("<slug:slug>/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("<slug:slug>/quotas/set/", views.quota_set, name="quota_set"),
    path("<slug:slug>/quotas/<int:quota_id>/delete/", views.quota_delete, name="quota_delete"),
    path("<slug:slug>/budget/", views.budget_set, name="budget_set"),
]
