from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.accounts.permissions import require, signed_in

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
    return render(request, "core/home.html", {})
