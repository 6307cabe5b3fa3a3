"""The tab bar above every dashboard: the dashboards this person may open."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from apps.accounts.permissions import Access
from apps.teams.models import Team


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    url: str


def dashboard_tabs(access: Access) -> list[Tab]:
    """Admin, finance, each team the person belongs to, and the frontier. One query (the member's teams)."""
    tabs: list[Tab] = []
    if access.is_admin:
        tabs.append(Tab("admin", "Platform", reverse("dashboards:admin")))
    if access.is_finance or access.is_admin:
        tabs.append(Tab("finance", "Finance", reverse("dashboards:finance")))
    if access.member_team_ids:
        for slug, name in (
            Team.objects.filter(pk__in=access.member_team_ids).order_by("slug").values_list("slug", "name")
        ):
            tabs.append(Tab(f"team:{slug}", name, reverse("dashboards:team", args=[slug])))
    if access.has_any_role:
        tabs.append(Tab("frontier", "Frontier", reverse("dashboards:frontier")))
    return tabs
