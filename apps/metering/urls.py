from __future__ import annotations

from django.urls import path

from . import views

app_name = "metering"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("teams/<slug:slug>/", views.team_costs, name="team"),
    path("teams/<slug:slug>/policy/", views.budget_policy, name="policy"),
    path("statements/", views.statement_list, name="statements"),
    path("statements/generate/", views.statements_generate, name="generate"),
    path("statements/<int:pk>/", views.statement_detail, name="statement"),
    path("statements/<int:pk>/close/", views.statement_close, name="close"),
]
