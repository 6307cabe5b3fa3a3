"""Charts: Plotly figures built server-side from selectors, drawn in the browser by plotly.js from our static files.

Every app that draws has a `charts.py` whose functions take selector output and return a `Chart`: the figure (a plain
Plotly figure, `{"data": [...], "layout": {...}}`), the table behind it (columns + rows, served as CSV with
`?csv=<key>` on the page's own URL, so the same permission checks and parameters apply), and what to say when there
is nothing to draw.

Why plain dicts rather than `plotly.graph_objects.Figure`: `go.Figure` validates every property when it is built,
which costs milliseconds per trace on every page view, and the dashboards must stay within a few times the cost of an
empty page. The tests validate every figure through `go.Figure` instead (`assert_valid_figure`), so a misspelt
property still fails there.

Colours: the Okabe-Ito palette, readable with the common colour-vision deficiencies (the same as pareto.css).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.safestring import SafeString, mark_safe

# Okabe & Ito (2008): blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow, black.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# Line styles as a second cue next to colour (p50, p95, p99 ...).
DASHES = ["solid", "dash", "dot", "dashdot"]
INK = "#1d2330"
GRID = "#e6e9ef"
PLOT_CONFIG = {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


# --- windows ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    key: str
    label: str
    span: dt.timedelta
    resolution: str  # "minute" (UsageMinute), "hour" (UsageHour) or "day" (UsageDay)

    def bounds(self, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
        """[start, end) ending at the end of the current period of the window's resolution."""
        now = now or timezone.now()
        if self.resolution == "minute":
            end = now.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        else:
            end = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
        return end - self.span, end


WINDOWS: dict[str, Window] = {
    w.key: w
    for w in (
        Window("1h", "1 hour", dt.timedelta(hours=1), "minute"),
        Window("24h", "24 hours", dt.timedelta(hours=24), "hour"),
        Window("7d", "7 days", dt.timedelta(days=7), "hour"),
        Window("30d", "30 days", dt.timedelta(days=30), "day"),
    )
}
DEFAULT_WINDOW = "24h"


def window_from(request: HttpRequest, default: str = DEFAULT_WINDOW) -> tuple[Window, str]:
    """The window in `?window=`; an unknown value gives the default and a message to show next to the picker."""
    key = request.GET.get("window") or default
    if key in WINDOWS:
        return WINDOWS[key], ""
    return WINDOWS[default], f"Unknown window {key[:20]!r}: choose one of {', '.join(WINDOWS)}. Showing {default}."


# --- values ----------------------------------------------------------------------------------------
def plot_time(value: dt.datetime | dt.date) -> str:
    """A timestamp as plotly.js wants it: local wall time in the site's zone, no offset (plotly.js has no zones)."""
    if isinstance(value, dt.datetime):
        return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def number(value: Fraction | Decimal | float | int | None, places: int = 4) -> float | None:
    """A plottable float (JSON has no Fraction or Decimal)."""
    if value is None:
        return None
    return round(float(value), places)


def cell(value: Any) -> str:
    """A CSV cell. Text that a spreadsheet would run as a formula (=, +, -, @ first) is quoted with a leading '."""
    if value is None:
        return ""
    if isinstance(value, Fraction):
        value = round(Decimal(value.numerator) / Decimal(value.denominator), 4)
    if isinstance(value, (dt.datetime, dt.date)):
        return plot_time(value)
    text = str(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


# --- charts ----------------------------------------------------------------------------------------
def base_layout(**overrides: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "colorway": PALETTE,
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12, "color": INK},
        "margin": {"l": 56, "r": 16, "t": 16, "b": 40},
        "height": 300,
        "autosize": True,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "legend": {"orientation": "h", "y": -0.2},
        "hovermode": "x unified",
        "xaxis": {"gridcolor": GRID, "automargin": True},
        "yaxis": {"gridcolor": GRID, "automargin": True, "rangemode": "tozero"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = layout[key] | value
        else:
            layout[key] = value
    return layout


def line(
    name: str, x: list[Any], y: list[Any], *, colour: str, dash: str = "solid", right: bool = False, **extra: Any
) -> dict[str, Any]:
    """A line trace: colour and dash together, so series differ by more than colour; `right` plots on yaxis2."""
    trace: dict[str, Any] = {
        "type": "scatter",
        "mode": "lines",
        "name": name,
        "x": x,
        "y": y,
        "line": {"color": colour, "dash": dash, "width": 2} | extra.pop("line", {}),
    }
    if right:
        trace["yaxis"] = "y2"
    return trace | extra


def right_axis(title: str, **extra: Any) -> dict[str, Any]:
    """A second y axis on the right, over the first (for a trace made with `line(..., right=True)`)."""
    return {
        "title": {"text": title},
        "overlaying": "y",
        "tickmode": "auto",
        "side": "right",
        "rangemode": "tozero",
        "showgrid": False,
    } | extra


@dataclass
class Chart:
    """One figure and the table behind it."""

    key: str  # unique on its page: the DOM id and the `?csv=` name
    title: str
    data: list[dict[str, Any]] = field(default_factory=list)
    layout: dict[str, Any] = field(default_factory=base_layout)
    columns: Sequence[str] = ()
    rows: list[Sequence[Any]] = field(default_factory=list)
    empty_message: str = "No data yet."
    empty_hint: str = ""
    description: str = ""  # one sentence under the title: what the chart shows, for everyone and screen readers
    csv_url: str = ""  # filled in by render_dashboard
    inline_table_max: int = 40  # show the table under the chart (folded) when it has at most this many rows

    @property
    def is_empty(self) -> bool:
        return not self.rows

    @property
    def show_table(self) -> bool:
        return 0 < len(self.rows) <= self.inline_table_max

    @property
    def dom_id(self) -> str:
        return "chart-" + re.sub(r"[^a-zA-Z0-9_-]", "-", self.key)

    def figure(self) -> dict[str, Any]:
        return {"data": self.data, "layout": self.layout}

    def spec(self) -> dict[str, Any]:
        """What charts.js passes to Plotly.react."""
        return {"data": self.data, "layout": self.layout, "config": PLOT_CONFIG}

    @property
    def spec_id(self) -> str:
        return self.dom_id + "-spec"

    def spec_script(self) -> SafeString:
        """The spec in a `<script type="application/json">`, like Django's `json_script` but escaped with
        `str.replace`: json_script's `str.translate` costs ~25 ms on a 2,000-point frontier, more than the rest of
        the page. Same escapes (<, >, & as \\u escapes), so the JSON cannot close the script element."""
        text = json.dumps(self.spec(), separators=(",", ":"), default=str)
        text = text.replace("&", "\\u0026").replace("<", "\\u003C").replace(">", "\\u003E")
        return mark_safe(f'<script id="{self.spec_id}" type="application/json">{text}</script>')  # noqa: S308

    @property
    def table_rows(self) -> list[list[str]]:
        return [[cell(v) for v in row] for row in self.rows]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.table_rows)
        return out.getvalue()


def csv_response(chart: Chart, filename: str) -> HttpResponse:
    response = HttpResponse(chart.csv(), content_type="text/csv; charset=utf-8")
    safe = re.sub(r"[^a-zA-Z0-9_.-]", "-", filename)
    response["Content-Disposition"] = f'attachment; filename="{safe}.csv"'
    return response


def render_dashboard(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    charts: Sequence[Chart],
    *,
    partial: str | None = None,
    csv_name: str = "",
) -> HttpResponse:
    """Render a page of charts, or one chart's table as CSV (`?csv=<key>`), or only `partial` for an htmx request.

    The CSV link of each chart is the page's own URL with its current parameters plus `csv=<key>`."""
    params = request.GET.copy()
    params.pop("csv", None)
    for chart in charts:
        link = params.copy()
        link["csv"] = chart.key
        chart.csv_url = f"{request.path}?{link.urlencode()}"
    wanted = request.GET.get("csv")
    if wanted is not None:
        for chart in charts:
            if chart.key == wanted:
                suffix = "-".join(str(v) for k, v in sorted(params.items()) if k != "page")
                return csv_response(chart, "-".join(p for p in (csv_name or "pareto", chart.key, suffix) if p))
        raise Http404("No such chart on this page.")
    context = context | {"charts": {chart.key: chart for chart in charts}}
    if partial and getattr(request, "htmx", False) and not request.htmx.boosted:  # type: ignore[attr-defined]
        response = render(request, partial, context)
    else:
        response = render(request, template, context)
    # One URL answers with the whole page or, to htmx, only the part that changes: caches must keep them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def assert_valid_figure(chart: Chart) -> None:
    """Tests: the figure is valid Plotly (every property name and value checked by plotly.graph_objects)."""
    import plotly.graph_objects as go

    go.Figure(chart.figure())
