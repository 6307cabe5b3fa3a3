from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts.permissions import access_for, require, signed_in
from apps.accounts.selectors import platform_admins
from apps.teams.models import Team

from .health import readiness


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
    """Each role's home page is its dashboard: admins the platform's, finance the chargeback one, and everyone else
    their team's (the first of their teams; the tab bar reaches the others). Someone with no role is told whom to
    ask. The dashboard views check access themselves, with the same request."""
    from apps.dashboards.views import admin, finance, team

    access = access_for(request.user)
    if not access.has_any_role:
        return render(request, "core/no_role.html", {"admins": list(platform_admins())})
    if access.is_admin:
        return admin.admin_dashboard(request)
    if access.is_finance:
        return finance.finance_dashboard(request)
    slug = Team.objects.filter(pk__in=access.member_team_ids).order_by("slug").values_list("slug", flat=True)[0]
    return team.team_dashboard(request, slug)
