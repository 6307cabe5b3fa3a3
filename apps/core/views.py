from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts.permissions import access_for, require, signed_in
from apps.accounts.selectors import platform_admins
from apps.audit.selectors import audit_events, with_changes
from apps.teams.selectors import my_teams_with_summary, teams_with_summary

from .health import readiness
from .selectors import platform_counts

RECENT_EVENTS = 10
HOME_TEAMS = 25


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Process alive. No dependencies are checked here on purpose: that is /readyz."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    checks = readiness()
    ok = all(c.ok for c in checks)
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return JsonResponse(body, status=200 if ok else 503)


@require(signed_in)
def home(request: HttpRequest) -> HttpResponse:
    """One summary per role the person has; someone with no role yet is told whom to ask."""
    access = access_for(request.user)
    context: dict[str, Any] = {}
    if not access.has_any_role:
        context["admins"] = list(platform_admins())
        return render(request, "core/no_role.html", context)
    if access.is_admin:
        context["counts"] = platform_counts()
        context["recent_events"] = with_changes(audit_events(access=access)[:RECENT_EVENTS])
    if access.is_finance:
        teams = teams_with_summary(access=access)
        context["budget_teams"] = list(teams[:HOME_TEAMS])
        context["team_total"] = teams.count()
    if access.member_team_ids:
        context["my_teams"] = list(my_teams_with_summary(access=access))
    return render(request, "core/home.html", context)
