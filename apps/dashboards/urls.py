"""Each role's home page: the team dashboard (leads and members), finance's, the admin's, and the frontier."""

from __future__ import annotations

from django.urls import path

from .views import admin, finance, frontier, team

app_name = "dashboards"
urlpatterns = [
    path("teams/<slug:slug>/", team.team_dashboard, name="team"),
    path("endpoints/<int:pk>/", team.endpoint_panel, name="endpoint"),
    path("finance/", finance.finance_dashboard, name="finance"),
    path("finance/teams/<slug:slug>/", finance.finance_team, name="finance_team"),
    path("finance/endpoints/<int:pk>/", finance.finance_endpoint, name="finance_endpoint"),
    path("admin/", admin.admin_dashboard, name="admin"),
    path("frontier/", frontier.frontier, name="frontier"),
]
