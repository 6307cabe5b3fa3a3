"""Time series of one endpoint for the dashboards: latency percentiles, traffic, load, replicas and daily cost.

The window decides the table read (apps/core/charts.WINDOWS): minute rows for an hour, hourly rollups for a day or a
week, daily rollups for a month, so a page never reads more than a couple of hundred rows of one endpoint, however
long its history. Each read is a range scan on the (endpoint, period, ...) unique index.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from apps.core.charts import WINDOWS, Window, plot_time

from .histograms import cumulative_buckets, merge_parts, quantiles
from .models import UsageDay, UsageHour, UsageMinute
from .money import SECONDS_PER_HOUR, exact_cost
from .rollup import statement_zone
from .selectors import layouts_for

LATENCIES = ("ttft", "itl", "e2e")
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_GAUGES = ("running_sum", "waiting_sum", "kv_usage_sum", "gauge_samples")
_COUNTERS = ("requests", "prompt_tokens", "generation_tokens")


@dataclass
class SeriesPoint:
    """One period (minute, UTC hour or statement-zone day) of one endpoint, all its price rows together."""

    start: dt.datetime | dt.date
    seconds: int = 0  # seconds metered in the period (60 per minute row)
    requests: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    running_sum: float = 0.0
    waiting_sum: float = 0.0
    kv_usage_sum: float = 0.0
    gauge_samples: int = 0
    replicas: int = 0
    metric_replicas: int = 0
    histograms: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # name -> {"p50": seconds or None, "p95": ..., "p99": ...}
    latency: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generation_tokens

    @cached_property
    def label(self) -> str:
        """The period's start as the charts' x value (computed once: seven charts share it)."""
        return plot_time(self.start)

    @property
    def request_rate(self) -> float | None:
        return self.requests / self.seconds if self.seconds else None

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None

    @property
    def running(self) -> float | None:
        return self.running_sum / self.gauge_samples if self.gauge_samples else None

    @property
    def waiting(self) -> float | None:
        return self.waiting_sum / self.gauge_samples if self.gauge_samples else None

    @property
    def kv_usage_percent(self) -> float | None:
        return self.kv_usage_sum / self.gauge_samples * 100 if self.gauge_samples else None

    @property
    def has_latency(self) -> bool:
        return any(v is not None for q in self.latency.values() for v in q.values())


@dataclass
class EndpointSeries:
    endpoint_id: int
    window: Window
    start: dt.datetime
    end: dt.datetime
    points: list[SeriesPoint]

    @property
    def resolution(self) -> str:
        return self.window.resolution

    @property
    def requests(self) -> int:
        return sum(p.requests for p in self.points)

    @property
    def tokens(self) -> int:
        return sum(p.tokens for p in self.points)


def _window_rows(endpoint_id: int, window: Window, start: dt.datetime, end: dt.datetime) -> QuerySet[Any]:
    if window.resolution == "minute":
        return UsageMinute.objects.filter(endpoint_id=endpoint_id, minute__gte=start, minute__lt=end).order_by("minute")
    if window.resolution == "hour":
        return UsageHour.objects.filter(endpoint_id=endpoint_id, hour__gte=start, hour__lt=end).order_by("hour")
    first, last = day_range(start, end)
    return UsageDay.objects.filter(endpoint_id=endpoint_id, day__gte=first, day__lte=last).order_by("day")


def day_range(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """The statement-zone days that [start, end) touches (both included)."""
    zone = statement_zone()
    return start.astimezone(zone).date(), (end - dt.timedelta(microseconds=1)).astimezone(zone).date()


def _quantiles(parts: list[dict[str, Any]] | None, layouts: dict[int, list[float]]) -> dict[str, float | None]:
    """p50/p95/p99 of one histogram, as `selectors.percentile` computes each, with the buckets built once."""
    if not parts:
        return dict.fromkeys(QUANTILES)
    return dict(zip(QUANTILES, quantiles(QUANTILES.values(), cumulative_buckets(parts, layouts)), strict=True))


def endpoint_series(endpoint_id: int, window: Window | str, now: dt.datetime | None = None) -> EndpointSeries:
    """The endpoint's periods in the window, oldest first; periods without a row are absent. Two queries at most
    (the rows, then the histogram layouts they use)."""
    if isinstance(window, str):
        window = WINDOWS[window]
    start, end = window.bounds(now or timezone.now())
    period = {"minute": "minute", "hour": "hour", "day": "day"}[window.resolution]
    columns = [period, *_COUNTERS, *_GAUGES, "replicas", "metric_replicas"]
    if window.resolution != "minute":
        columns.append("minutes")
    # Only the histograms drawn (not "queue"): less JSON to send and parse.
    keys = {f"h_{name}": KeyTransform(name, "histograms") for name in LATENCIES}
    points: dict[Any, SeriesPoint] = {}
    parts: dict[Any, dict[str, list[dict[str, Any]]]] = {}
    for row in _window_rows(endpoint_id, window, start, end).values(*columns, **keys):
        key = row[period]
        point = points.get(key)
        if point is None:
            point = points[key] = SeriesPoint(start=key)
            parts[key] = {}
        # A rollup period can hold several rows (one per price in force); a minute row is one minute.
        point.seconds += row["minutes"] * 60 if "minutes" in row else 60
        point.requests += row["requests"]
        point.prompt_tokens += row["prompt_tokens"]
        point.generation_tokens += row["generation_tokens"]
        point.running_sum += row["running_sum"]
        point.waiting_sum += row["waiting_sum"]
        point.kv_usage_sum += row["kv_usage_sum"]
        point.gauge_samples += row["gauge_samples"]
        point.replicas = max(point.replicas, row["replicas"])
        point.metric_replicas = max(point.metric_replicas, row["metric_replicas"])
        for name in LATENCIES:
            if row[f"h_{name}"]:
                parts[key].setdefault(name, []).extend(row[f"h_{name}"])
    for key, point in points.items():
        point.histograms = {name: merge_parts(found) if len(found) > 1 else found for name, found in parts[key].items()}
    layouts = layouts_for(point.histograms for point in points.values())
    for point in points.values():
        point.latency = {name: _quantiles(point.histograms.get(name), layouts) for name in LATENCIES}
    return EndpointSeries(endpoint_id=endpoint_id, window=window, start=start, end=end, points=list(points.values()))


@dataclass
class DailyCost:
    """One statement-zone day of one endpoint in one currency: exact busy and idle cost."""

    day: dt.date
    currency: str
    total: Fraction = Fraction(0)
    idle: Fraction = Fraction(0)
    gpu_seconds: int = 0
    idle_gpu_seconds: int = 0

    @property
    def busy(self) -> Fraction:
        return self.total - self.idle


def endpoint_daily_cost(endpoint_id: int, start_day: dt.date, end_day: dt.date) -> list[DailyCost]:
    """Cost per day and currency (days with rows only, oldest first), idle cost apart. One query.

    Idle cost = idle GPU-seconds x the row's rate / 3600, exact; busy = the row's cost minus that."""
    rows = (
        UsageDay.objects.filter(endpoint_id=endpoint_id, day__gte=start_day, day__lte=end_day)
        .exclude(currency="")
        .order_by("day", "currency")
        .values_list("day", "currency", "rate", "price_seconds", "gpu_seconds", "idle_gpu_seconds")
    )
    out: dict[tuple[dt.date, str], DailyCost] = {}
    for day, currency, rate, price_seconds, gpu_seconds, idle_gpu_seconds in rows:
        cost = out.get((day, currency))
        if cost is None:
            cost = out[(day, currency)] = DailyCost(day=day, currency=currency)
        cost.total += exact_cost(price_seconds)
        if rate is not None:
            cost.idle += Fraction(Decimal(rate)) * idle_gpu_seconds / SECONDS_PER_HOUR
        cost.gpu_seconds += gpu_seconds
        cost.idle_gpu_seconds += idle_gpu_seconds
    return list(out.values())
