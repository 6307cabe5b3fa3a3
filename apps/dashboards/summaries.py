"""Per-endpoint summaries over the frontier's windows, recomputed by the worker (`tasks.refresh_summaries`).

The frontier page needs, for every endpoint a person can see, the cost per 1M tokens and the p95 end-to-end latency
over 24 hours, 7 days or 30 days. Merging 2,000 endpoints' latency histograms over 30 days takes seconds, so it is
done here, off the request path, and the page reads one `EndpointSummary` row per endpoint.

Windows, and the rollups they read:
- 24h: the last 24 UTC hours up to the end of the current hour, from `UsageHour`.
- 7d and 30d: the last 7 (30) days of the statement time zone including today, from `UsageDay`, exactly as
  `metering.selectors.endpoint_usage` reads them (the same merge and the same percentiles).

Deleted and rejected endpoints get no row. Running the refresh twice at once is safe: each window is replaced in one
transaction under an advisory lock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils import timezone

from apps.endpoints.models import Endpoint
from apps.metering.models import UsageDay, UsageHour
from apps.metering.money import exact_cost
from apps.metering.rollup import day_bounds, local_day
from apps.metering.selectors import layouts_for, percentile

from .models import EndpointSummary, SummaryRun, SummaryWindow

_LOCK = 7401  # pg advisory lock: one summary refresh writes at a time
_CHUNK = 2000
MILLION = 1_000_000
PER_MILLION_PLACES = Decimal("0.000001")


def _accumulate(into: dict[int, dict[str, Any]], parts: list[dict[str, Any]]) -> None:
    """Add histogram parts into per-layout sums, in place (`histograms.merge_parts`, without a copy per row)."""
    for part in parts:
        mine = into.get(part["l"])
        if mine is None:
            into[part["l"]] = {"l": part["l"], "b": list(part["b"]), "s": part.get("s", 0.0), "c": part.get("c", 0.0)}
            continue
        buckets = mine["b"]
        for index, value in enumerate(part["b"]):
            buckets[index] += value
        mine["s"] += part.get("s", 0.0)
        mine["c"] += part.get("c", 0.0)


@dataclass
class _Totals:
    """One endpoint's rollup rows added up (histograms merged per layout as they stream past)."""

    costs: dict[str, Decimal] = field(default_factory=dict)  # currency -> price_seconds
    gpu_seconds: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0
    e2e: dict[int, dict[str, Any]] = field(default_factory=dict)
    ttft: dict[int, dict[str, Any]] = field(default_factory=dict)

    def add(self, row: dict[str, Any]) -> None:
        if row["currency"]:
            self.costs[row["currency"]] = self.costs.get(row["currency"], Decimal(0)) + row["price_seconds"]
        self.gpu_seconds += row["gpu_seconds"]
        self.prompt_tokens += row["prompt_tokens"]
        self.generation_tokens += row["generation_tokens"]
        self.requests += row["requests"]
        if row["e2e"]:
            _accumulate(self.e2e, row["e2e"])
        if row["ttft"]:
            _accumulate(self.ttft, row["ttft"])

    @property
    def histograms(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "e2e": [self.e2e[k] for k in sorted(self.e2e)],
            "ttft": [self.ttft[k] for k in sorted(self.ttft)],
        }


def window_period(window: str, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC that the window's summaries cover when computed at `now`."""
    if window == SummaryWindow.DAY:
        end = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
        return end - dt.timedelta(hours=24), end
    first, last = window_days(window, now)
    return day_bounds(first)[0], day_bounds(last)[1]


def window_days(window: str, now: dt.datetime) -> tuple[dt.date, dt.date]:
    """First and last statement-zone day of a day-based window (7d, 30d), today included."""
    days = {SummaryWindow.WEEK: 7, SummaryWindow.MONTH: 30}[SummaryWindow(window)]
    today = local_day(now)
    return today - dt.timedelta(days=days - 1), today


_COLUMNS = ("endpoint_id", "currency", "price_seconds", "gpu_seconds", "prompt_tokens", "generation_tokens", "requests")


def _rows(window: str, now: dt.datetime) -> QuerySet[Any]:
    qs: QuerySet[Any]
    if window == SummaryWindow.DAY:
        start, end = window_period(window, now)
        qs = UsageHour.objects.filter(hour__gte=start, hour__lt=end)
    else:
        first, last = window_days(window, now)
        qs = UsageDay.objects.filter(day__gte=first, day__lte=last)
    # Only the two histograms the page uses leave the database.
    return qs.values(
        *_COLUMNS, e2e=KeyTransform("e2e", "histograms"), ttft=KeyTransform("ttft", "histograms")
    ).order_by("endpoint_id")


def _stream(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[int, _Totals]]:
    """(endpoint id, totals) for rows ordered by endpoint."""
    current: int | None = None
    totals = _Totals()
    for row in rows:
        if row["endpoint_id"] != current:
            if current is not None:
                yield current, totals
            current, totals = row["endpoint_id"], _Totals()
        totals.add(row)
    if current is not None:
        yield current, totals


def per_million(cost: Fraction, tokens: int) -> Decimal | None:
    if not tokens:
        return None
    value = cost * MILLION / tokens
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(PER_MILLION_PLACES)


def compute_window(window: str, now: dt.datetime) -> list[EndpointSummary]:
    """The window's summary rows (not saved), one per live endpoint with rollup rows in the window."""
    teams = dict(Endpoint.objects.exclude(state__in=Endpoint.FINAL).values_list("pk", "team_id"))
    collected = [(pk, t) for pk, t in _stream(_rows(window, now).iterator(chunk_size=_CHUNK)) if pk in teams]
    layouts = layouts_for(t.histograms for _, t in collected)
    out = []
    for pk, totals in collected:
        currency, price_seconds, mixed = "", Decimal(0), len(totals.costs) > 1
        if len(totals.costs) == 1:
            currency, price_seconds = next(iter(totals.costs.items()))
        tokens = totals.prompt_tokens + totals.generation_tokens
        histograms = totals.histograms
        out.append(
            EndpointSummary(
                endpoint_id=pk,
                team_id=teams[pk],
                window=window,
                computed_at=now,
                currency=currency,
                mixed_currency=mixed,
                price_seconds=price_seconds,
                cost_per_million=per_million(exact_cost(price_seconds), tokens) if currency else None,
                gpu_seconds=totals.gpu_seconds,
                prompt_tokens=totals.prompt_tokens,
                generation_tokens=totals.generation_tokens,
                requests=totals.requests,
                p50_e2e=percentile(histograms, "e2e", 0.5, layouts),
                p95_e2e=percentile(histograms, "e2e", 0.95, layouts),
                p95_ttft=percentile(histograms, "ttft", 0.95, layouts),
            )
        )
    return out


def refresh_endpoint_summaries(now: dt.datetime | None = None) -> int:
    """Recompute every window's summaries as of `now`; returns the number of rows written (all windows).

    Contract: the benchmark's data generator calls this after building its rollups."""
    now = now or timezone.now()
    written = 0
    for window in SummaryWindow.values:
        rows = compute_window(window, now)
        start, end = window_period(window, now)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK])
            EndpointSummary.objects.filter(window=window).delete()
            EndpointSummary.objects.bulk_create(rows, batch_size=1000)
            # A new row (new id) per refresh: the page's cache keys on it (views/frontier.py).
            SummaryRun.objects.filter(window=window).delete()
            SummaryRun.objects.create(window=window, start=start, end=end, computed_at=now, endpoints=len(rows))
        written += len(rows)
    return written
