"""The team dashboard (leads and members): the team's endpoints, its month against budget, its GPUs against quota,
and one endpoint's charts over a chosen window; and the same endpoint panel as a page of its own.

The window picker re-fetches the panel (htmx, `#endpoint-panel`; on the team page the month's totals follow out of
band); `?csv=<chart>` answers a chart's table on both pages (render_dashboard). Another team's page or endpoint is a
404 (scoped querysets), as everywhere."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from apps.accounts.permissions import access_for, require, signed_in
from apps.core.charts import WINDOWS, Chart, Window, render_dashboard, window_from
from apps.endpoints import charts
from apps.endpoints.models import Endpoint
from apps.endpoints.selectors import team_reservations
from apps.metering.selectors import budget_status
from apps.metering.series import day_range, endpoint_daily_cost, endpoint_series
from apps.teams.models import Team

from ..tabs import dashboard_tabs

PANEL = "dashboards/_endpoint_panel.html"
COST_DAYS_AT_LEAST = 7  # the cost chart shows at least a week, even for a one-hour window


@dataclass
class Panel:
    """One endpoint's charts over a window, and where the window picker sends its requests."""

    endpoint: Endpoint | None
    window: Window
    window_error: str
    url: str  # the picker's target: the page itself
    keep_endpoint: bool  # the picker sends ?endpoint= (team page) or not (endpoint page: it is in the path)
    charts: list[Chart]
    message: str = ""

    def context(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "window": self.window,
            "window_error": self.window_error,
            "windows": list(WINDOWS.values()),
            "panel_url": self.url,
            "keep_endpoint": self.keep_endpoint,
            "panel_message": self.message,
        }


def _endpoint_charts(endpoint: Endpoint, window: Window, now: dt.datetime) -> list[Chart]:
    """Three queries: the window's rows, their histogram layouts, the days' cost."""
    series = endpoint_series(endpoint.pk, window, now=now)
    first, last = day_range(series.start, series.end)
    first = min(first, last - dt.timedelta(days=COST_DAYS_AT_LEAST - 1))
    costs = endpoint_daily_cost(endpoint.pk, first, last)
    return charts.endpoint_charts(series, costs, start_day=first, end_day=last)


def _panel(
    request: HttpRequest, endpoint: Endpoint | None, *, url: str, keep_endpoint: bool, message: str = ""
) -> Panel:
    window, error = window_from(request)
    found = _endpoint_charts(endpoint, window, timezone.now()) if endpoint is not None else []
    return Panel(endpoint, window, error, url, keep_endpoint, found, message)


def _wants_panel_only(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and "csv" not in request.GET  # type: ignore[union-attr]


def _pick(endpoints: list[Endpoint], wanted: str | None) -> tuple[Endpoint | None, str]:
    """The endpoint named by ?endpoint=, else the first ready one, else the first; and a message for a bad value."""
    message = ""
    if wanted:
        for endpoint in endpoints:
            if str(endpoint.pk) == wanted:
                return endpoint, ""
        message = f"No endpoint {wanted[:20]!r} in this team: showing another one."
    ready = [e for e in endpoints if e.state == Endpoint.State.READY]
    chosen = ready[0] if ready else (endpoints[0] if endpoints else None)
    return chosen, message


def _this_hour() -> dt.datetime:
    return timezone.now().replace(minute=0, second=0, microsecond=0)


@require(signed_in)
def team_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    access = access_for(request.user)
    team = get_object_or_404(access.scope(Team.objects.all(), "pk"), slug=slug)
    endpoints = list(
        Endpoint.objects.filter(team=team)
        .exclude(state__in=Endpoint.FINAL)
        .select_related("model", "gpu_type")
        .order_by("name", "pk")
    )
    selected, message = _pick(endpoints, request.GET.get("endpoint"))
    url = reverse("dashboards:team", args=[team.slug])
    panel = _panel(request, selected, url=url, keep_endpoint=True, message=message)
    context: dict[str, Any] = {
        "team": team,
        **panel.context(),
        "can_use_endpoints": access.can_use_endpoints(team.pk),
    }
    totals = [
        # As of the start of the hour, so the forecast (which shrinks by the second) is the same in the CSV.
        charts.budget_chart(budget_status(team, now=_this_hour()), team_name=team.name),
        charts.gpu_quota_chart(team_reservations(team=team)),
    ]
    context |= {
        "has_budget": not totals[0].is_empty,
        "can_edit_budget": access.can_edit_budget(),
        # An htmx request (the window picker) gets the panel, and the totals as an out-of-band swap: every figure
        # on the page is redrawn fresh, none is left stale.
        "oob_totals": _wants_panel_only(request),
    }
    if not context["oob_totals"]:
        context |= {
            "tabs": dashboard_tabs(access),
            "tab": f"team:{team.slug}",
            "endpoints": endpoints,
            "can_request_endpoints": access.can_request_endpoints(team.pk),
        }
    return render_dashboard(
        request,
        "dashboards/team.html",
        context,
        [*totals, *panel.charts],
        partial=PANEL,
        csv_name=f"{team.slug}-{selected.name}" if selected is not None else team.slug,
    )


@require(signed_in)
def endpoint_panel(request: HttpRequest, pk: int) -> HttpResponse:
    access = access_for(request.user)
    endpoint = get_object_or_404(access.scope(Endpoint.objects.select_related("team", "model", "gpu_type")), pk=pk)
    panel = _panel(request, endpoint, url=reverse("dashboards:endpoint", args=[endpoint.pk]), keep_endpoint=False)
    context: dict[str, Any] = {
        "team": endpoint.team,
        **panel.context(),
        "can_use_endpoints": access.can_use_endpoints(endpoint.team_id),
        "endpoint_page": True,  # team.html shows only the panel
    }
    if not _wants_panel_only(request):
        context |= {"tabs": dashboard_tabs(access), "tab": f"team:{endpoint.team.slug}"}
    return render_dashboard(
        request,
        "dashboards/team.html",
        context,
        panel.charts,
        partial=PANEL,
        csv_name=f"{endpoint.team.slug}-{endpoint.name}",
    )
