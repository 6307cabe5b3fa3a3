"""The frontier: cost per 1M tokens against p95 latency for every endpoint the person may see.

Reads only the precomputed `EndpointSummary` rows (summaries.py), so its cost does not depend on how much history
the rollups hold: two queries for the figure, whatever the window. The built figure is cached per window, refresh
and set of visible teams (admins and finance share one), so 2,000 endpoints cost one cache read until the next
refresh; a refresh makes a new `SummaryRun` row and with it a new key."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.cache import cache
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from apps.accounts.permissions import Access, access_for, require
from apps.catalog.charts import frontier_chart, frontier_points
from apps.core.charts import WINDOWS, Chart, Window, render_dashboard

from ..models import EndpointSummary, SummaryRun, SummaryWindow
from ..tabs import dashboard_tabs

FRONTIER_WINDOWS = [WINDOWS[key] for key in SummaryWindow.values]
DEFAULT_WINDOW = SummaryWindow.WEEK.value
CACHE_SECONDS = 3600
STALE_AFTER = dt.timedelta(hours=1)  # the refresh runs every few minutes; older means the worker is not running


def has_role(access: Access) -> bool:
    return access.has_any_role


def frontier_window(request: HttpRequest) -> tuple[Window, str]:
    """The window in `?window=` (24h, 7d or 30d); anything else gives 7d and a message."""
    key = request.GET.get("window") or DEFAULT_WINDOW
    if key in SummaryWindow.values:
        return WINDOWS[key], ""
    choices = ", ".join(SummaryWindow.values)
    return WINDOWS[DEFAULT_WINDOW], f"Unknown window {key[:20]!r}: choose one of {choices}. Showing {DEFAULT_WINDOW}."


def _build(access: Access, window: Window, run: SummaryRun | None) -> tuple[Chart, dict[str, Any]]:
    rows: Any = []
    if run is not None:  # a refresh writes its run and its rows together: no run, no rows
        rows = access.scope(EndpointSummary.objects.filter(window=window.key), "team_id").values(
            "endpoint_id",
            "currency",
            "mixed_currency",
            "cost_per_million",
            "prompt_tokens",
            "generation_tokens",
            "requests",
            "p95_e2e",
            endpoint_name=F("endpoint__name"),
            team_slug=F("team__slug"),
            team_name=F("team__name"),
            model_name=F("endpoint__model__name"),
            quality_score=F("endpoint__model__quality_score"),
        )
    points, notes = frontier_points(rows)
    chart = frontier_chart(points, window_label=window.label)
    if run is None:
        chart.empty_message = "The frontier has not been computed yet."
        chart.empty_hint = (
            "The worker's dashboards.refresh_summaries task computes it every few minutes; "
            "check that the worker and beat are running."
        )
    facts = {
        "notes": notes,
        "scored": sum(1 for p in points if p.score is not None),
        "unscored": sum(1 for p in points if p.score is None),
        "on_frontier": sum(1 for p in points if p.on_frontier),
    }
    return chart, facts


def frontier_figure(access: Access, window: Window, run: SummaryRun | None) -> tuple[Chart, dict[str, Any]]:
    """The chart and the facts the page states about it, from the cache when this refresh was drawn before."""
    if run is None:
        return _build(access, window, run)
    scope = "all" if access.sees_all_teams else ",".join(str(t) for t in sorted(access.member_team_ids))
    key = f"dashboards:frontier:{window.key}:{run.pk}:{run.computed_at.timestamp()}:{scope}"
    cached = cache.get(key)
    if cached is None:
        cached = _build(access, window, run)
        cache.set(key, cached, CACHE_SECONDS)
    return cached  # type: ignore[no-any-return]


@require(has_role)
def frontier(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    window, error = frontier_window(request)
    run = SummaryRun.objects.filter(window=window.key).first()
    chart, facts = frontier_figure(access, window, run)
    context = {
        "tabs": dashboard_tabs(access),
        "tab": "frontier",
        "windows": FRONTIER_WINDOWS,
        "window": window,
        "window_error": error,
        "run": run,
        "stale": run is not None and timezone.now() - run.computed_at > STALE_AFTER,
        **facts,
    }
    return render_dashboard(
        request,
        "dashboards/frontier.html",
        context,
        [chart],
        partial="dashboards/_frontier_charts.html",
        csv_name="frontier",
    )
