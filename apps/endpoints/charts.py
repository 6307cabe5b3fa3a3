"""The team lead's charts: one endpoint over a window (latency, traffic, load, replicas, daily cost) and the team's
totals (month-to-date cost against budget, GPUs reserved against quota).

Functions take selector output (apps/metering/series.py, metering.selectors.budget_status,
endpoints.selectors.team_reservations) and return `apps.core.charts.Chart`s; the rows of each chart are its table
and CSV. Colours come from the Okabe-Ito palette and lines also differ by dash, so no chart depends on colour alone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from apps.core.charts import DASHES, PALETTE, Chart, base_layout, line, number, plot_time, right_axis
from apps.metering.histograms import INF
from apps.metering.money import format_money
from apps.metering.selectors import HISTOGRAM_NAMES, BudgetStatus
from apps.metering.series import QUANTILES, DailyCost, EndpointSeries, SeriesPoint

from .selectors import QuotaFit

NO_TRAFFIC = "No traffic yet: send a request from Try it."
NO_TRAFFIC_HINT = "Charts fill in a minute or two after the first requests (metrics are scraped every minute)."
LATENCY_TITLES = {"ttft": "Time to first token", "itl": "Inter-token latency", "e2e": "End-to-end latency"}
# Time series keep their table in the CSV link only once they are longer than this: a day is 24 rows in each of six
# charts, and rendering those cells would cost more than the rest of the page (the speed goal).
SERIES_TABLE_MAX = 12
BUSY_COLOUR, IDLE_COLOUR = PALETTE[0], PALETTE[1]  # blue and orange: apart for every common colour deficiency


def _x(points: Sequence[SeriesPoint]) -> list[str]:
    return [p.label for p in points]


def _period_column(series: EndpointSeries) -> str:
    return {"minute": "minute", "hour": "hour (UTC)", "day": "day"}[series.resolution]


def _seconds(value: float | None) -> float | None:
    # A rank in the +Inf bucket answers +Inf (or the last finite bound); JSON and plots want a finite number.
    if value is None or value == INF or value == -INF:
        return None
    return round(value, 6)


# --- one endpoint ----------------------------------------------------------------------------------
def latency_chart(series: EndpointSeries, name: str) -> Chart:
    """p50/p95/p99 of one vLLM histogram (ttft, itl or e2e) per period, in seconds."""
    points: list[SeriesPoint] = []
    values: list[list[float | None]] = []  # per point: p50, p95, p99
    for point in series.points:
        found = [_seconds(v) for v in point.latency.get(name, {}).values()]
        if any(v is not None for v in found):
            points.append(point)
            values.append(found)
    x = _x(points)
    data = [
        line(
            label,
            x,
            [v[i] for v in values],
            colour=PALETTE[i],
            dash=DASHES[i],
            mode="lines+markers" if len(points) < 30 else "lines",
            marker={"size": 5},
            hovertemplate="%{y:.3f} s",
        )
        for i, label in enumerate(QUANTILES)
    ]
    return Chart(
        key=name,
        title=LATENCY_TITLES[name],
        data=data,
        layout=base_layout(yaxis={"title": {"text": "seconds"}}),
        columns=(_period_column(series), *(f"{label} (s)" for label in QUANTILES)),
        rows=[[p.start, *v] for p, v in zip(points, values, strict=True)],
        empty_message=NO_TRAFFIC,
        empty_hint=NO_TRAFFIC_HINT,
        inline_table_max=SERIES_TABLE_MAX,
        description=f"Percentiles of {HISTOGRAM_NAMES[name]} per {series.resolution}, over {series.window.label}.",
    )


def throughput_chart(series: EndpointSeries) -> Chart:
    points = series.points if series.requests or series.tokens else []
    x = _x(points)
    data = [
        line("requests/s", x, [number(p.request_rate) for p in points], colour=PALETTE[0], dash=DASHES[0]),
        line(
            "tokens/s (right)",
            x,
            [number(p.tokens_per_second, 2) for p in points],
            colour=PALETTE[1],
            dash=DASHES[1],
            right=True,
        ),
    ]
    layout = base_layout(
        yaxis={"title": {"text": "requests/s"}},
        yaxis2=right_axis("tokens/s"),
        margin={"r": 56},
    )
    return Chart(
        key="throughput",
        title="Requests and tokens per second",
        data=data,
        layout=layout,
        columns=(_period_column(series), "requests", "requests/s", "prompt tokens", "generation tokens", "tokens/s"),
        rows=[
            [
                p.start,
                p.requests,
                number(p.request_rate),
                p.prompt_tokens,
                p.generation_tokens,
                number(p.tokens_per_second, 2),
            ]
            for p in points
        ],
        empty_message=NO_TRAFFIC,
        empty_hint=NO_TRAFFIC_HINT,
        inline_table_max=SERIES_TABLE_MAX,
        description="Finished requests and prompt + generated tokens per second, averaged over each period.",
    )


def load_chart(series: EndpointSeries) -> Chart:
    points = [p for p in series.points if p.gauge_samples]
    x = _x(points)
    data = [
        line("running", x, [number(p.running, 2) for p in points], colour=PALETTE[0], dash=DASHES[0]),
        line("waiting", x, [number(p.waiting, 2) for p in points], colour=PALETTE[3], dash=DASHES[1]),
        line(
            "KV cache % (right)",
            x,
            [number(p.kv_usage_percent, 1) for p in points],
            colour=PALETTE[2],
            dash=DASHES[2],
            right=True,
        ),
    ]
    layout = base_layout(
        yaxis={"title": {"text": "requests"}},
        yaxis2=right_axis("KV cache %", range=[0, 100], rangemode="normal"),
        margin={"r": 56},
    )
    return Chart(
        key="load",
        title="Running and waiting requests, KV-cache usage",
        data=data,
        layout=layout,
        columns=(_period_column(series), "running (mean)", "waiting (mean)", "KV cache % (mean)"),
        rows=[[p.start, number(p.running, 2), number(p.waiting, 2), number(p.kv_usage_percent, 1)] for p in points],
        empty_message="No load measured yet: the endpoint's metrics have not been scraped in this window.",
        empty_hint="Send a request from Try it; running requests and KV-cache use show here once it is serving.",
        inline_table_max=SERIES_TABLE_MAX,
        description="Mean requests in the engine (running) and queued (waiting), and mean KV-cache use, per period.",
    )


def replicas_chart(series: EndpointSeries) -> Chart:
    points = series.points
    most = max((max(p.replicas, p.metric_replicas) for p in points), default=0)
    x = _x(points)
    data = [
        line("billed replicas", x, [p.replicas for p in points], colour=PALETTE[0], line={"shape": "hv"}),
        line(
            "replicas in metrics",
            x,
            [p.metric_replicas for p in points],
            colour=PALETTE[4],
            dash=DASHES[1],
            line={"shape": "hv"},
        ),
    ]
    return Chart(
        key="replicas",
        title="Replicas",
        data=data,
        # Whole replicas: a tick per replica while there are few.
        layout=base_layout(yaxis={"title": {"text": "replicas"}} | ({"dtick": 1} if most <= 10 else {})),
        columns=(_period_column(series), "billed replicas (max)", "replicas in metrics (max)"),
        rows=[[p.start, p.replicas, p.metric_replicas] for p in points],
        empty_message="No replicas metered in this window.",
        empty_hint="Replicas are counted once the endpoint is running; a pending or failed endpoint holds none.",
        inline_table_max=SERIES_TABLE_MAX,
        description="Most replicas held (billed) and most replicas seen reporting metrics, per period.",
    )


def cost_chart(costs: Sequence[DailyCost], *, start_day: dt.date, end_day: dt.date) -> Chart:
    """Stacked bars per day: cost with traffic and idle cost (GPU time with no request), per currency."""
    currencies = sorted({c.currency for c in costs})
    data: list[dict[str, Any]] = []
    for i, currency in enumerate(currencies):
        mine = [c for c in costs if c.currency == currency]
        suffix = f" ({currency})"
        x = [plot_time(c.day) for c in mine]
        data.append(
            {
                "type": "bar",
                "name": "busy" + suffix,
                "x": x,
                "y": [number(c.busy) for c in mine],
                "marker": {"color": BUSY_COLOUR if i == 0 else PALETTE[5]},
                "hovertemplate": f"%{{y:,.2f}} {currency}",
            }
        )
        data.append(
            {
                "type": "bar",
                "name": "idle" + suffix,
                "x": x,
                "y": [number(c.idle) for c in mine],
                "marker": {"color": IDLE_COLOUR if i == 0 else PALETTE[6], "pattern": {"shape": "/"}},
                "hovertemplate": f"%{{y:,.2f}} {currency}",
            }
        )
    return Chart(
        key="cost",
        title="Cost per day" + (f" ({', '.join(currencies)})" if currencies else ""),
        data=data,
        layout=base_layout(
            barmode="stack",
            yaxis={"title": {"text": ", ".join(currencies) or "cost"}},
            # A tick per day while they fit; a month gets plotly's own spacing.
            xaxis={"type": "date", "tickformat": "%b %d"}
            | ({"dtick": 86_400_000} if (end_day - start_day).days <= 10 else {}),
        ),
        columns=("day", "currency", "busy", "idle", "total", "GPU-hours", "idle GPU-hours"),
        rows=[
            [
                c.day,
                c.currency,
                number(c.busy),
                number(c.idle),
                number(c.total),
                number(c.gpu_seconds / 3600, 2),
                number(c.idle_gpu_seconds / 3600, 2),
            ]
            for c in costs
        ],
        empty_message="No cost yet in these days.",
        empty_hint="Cost is counted from the minute the endpoint holds GPUs; days appear after the hourly rollup.",
        description=f"From {start_day:%b %d} to {end_day:%b %d}: cost of GPU time with traffic (busy) and without "
        "any request (idle, hatched), per day.",
    )


def endpoint_charts(
    series: EndpointSeries, costs: Sequence[DailyCost], *, start_day: dt.date, end_day: dt.date
) -> list[Chart]:
    return [
        *(latency_chart(series, name) for name in ("ttft", "itl", "e2e")),
        throughput_chart(series),
        load_chart(series),
        replicas_chart(series),
        cost_chart(costs, start_day=start_day, end_day=end_day),
    ]


# --- team totals -----------------------------------------------------------------------------------
def budget_chart(status: BudgetStatus | None, *, team_name: str) -> Chart:
    """Month-to-date cost and the month-end forecast as bars, the budget as a dashed line across them."""
    if status is None:
        return Chart(
            key="budget",
            title="Month-to-date cost against budget",
            empty_message=f"{team_name} has no monthly budget.",
            empty_hint="With a budget, this shows the month's cost so far and the forecast for the month's end.",
            description="This month's cost so far and the forecast, against the monthly budget.",
        )
    currency = status.currency
    amount = number(status.amount, 2) or 0.0
    spent, forecast = number(status.spent, 2) or 0.0, number(status.forecast, 2) or 0.0
    over = bool(status.amount) and status.forecast >= Fraction(status.amount)
    data = [
        {
            "type": "bar",
            "name": "cost",
            "x": ["Spent so far", "Forecast at month end"],
            "y": [spent, forecast],
            "marker": {"color": [PALETTE[0], PALETTE[3] if over else PALETTE[5]], "pattern": {"shape": ["", "/"]}},
            "text": [format_money(status.spent, currency), format_money(status.forecast, currency)],
            "textposition": "auto",
            "hovertemplate": f"%{{y:,.2f}} {currency}<extra></extra>",
        },
        {
            # The budget as a line across both bars (a trace, so it is in the legend and the hover).
            "type": "scatter",
            "mode": "lines",
            "name": f"budget {status.amount_display}",
            "x": ["Spent so far", "Forecast at month end"],
            "y": [amount, amount],
            "line": {"color": PALETTE[7], "dash": "dash", "width": 2},
            "hovertemplate": f"budget %{{y:,.2f}} {currency}<extra></extra>",
        },
    ]
    top = max(amount, spent, forecast) * 1.15 or 1
    percent = status.percent
    forecast_percent = status.forecast_percent
    rows: list[Sequence[Any]] = [
        ["spent so far", number(status.spent, 2), currency, number(percent, 1)],
        ["forecast at month end", number(status.forecast, 2), currency, number(forecast_percent, 1)],
        ["budget", number(status.amount, 2), currency, 100.0 if status.amount else None],
    ]
    for other, value in sorted(status.other_currencies.items()):
        rows.append([f"spent so far in {other} (not in the budget's currency)", number(value, 2), other, None])
    return Chart(
        key="budget",
        title=f"{status.month:%B %Y}: cost against budget ({currency})",
        data=data,
        layout=base_layout(
            yaxis={"title": {"text": currency}, "range": [0, top]}, hovermode="closest", showlegend=True
        ),
        columns=("measure", "amount", "currency", "% of budget"),
        rows=rows,
        description=f"Spent {status.spent_display} of {status.amount_display}; the forecast adds what the "
        f"endpoints holding GPUs now cost per hour until the month ends ({status.forecast_display}).",
    )


def gpu_quota_chart(fits: Sequence[QuotaFit]) -> Chart:
    skus = [f.gpu_type.sku for f in fits]
    data = [
        {
            "type": "bar",
            "name": "reserved",
            "x": skus,
            "y": [f.reserved for f in fits],
            "marker": {"color": PALETTE[0]},
        },
        {
            "type": "bar",
            "name": "quota",
            "x": skus,
            "y": [f.limit for f in fits],
            "marker": {"color": PALETTE[2], "pattern": {"shape": "."}},
        },
    ]
    return Chart(
        key="gpus",
        title="GPUs reserved against quota",
        data=data,
        layout=base_layout(barmode="group", yaxis={"title": {"text": "GPUs"}}, hovermode="x unified"),
        columns=("GPU type", "reserved", "quota", "free"),
        rows=[[f.gpu_type.sku, f.reserved, f.limit, f.free] for f in fits],
        empty_message="No GPU quota and no reservations yet.",
        empty_hint="A platform admin sets the team's quota per GPU type; a lead can ask for more from Quota requests.",
        description="GPUs held by the team's endpoints (replicas x GPUs per replica, at their maximum) per GPU type, "
        "against the team's quota.",
    )
