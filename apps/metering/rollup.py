"""Minute rows -> hourly rows (UTC hours) -> daily rows (days of the statement time zone).

Whatever writes minute rows marks their hour dirty (`DirtyHour`); a rollup recomputes each dirty hour from its
minutes and then each day that contains a recomputed hour from its hours. Recomputing a whole hour or day (delete
and insert, under an advisory lock per hour or day) makes it idempotent and safe to run twice. A marker is removed
only if it was not marked again while the hour was being computed (compare-and-delete on `marked_at`).

Rows are kept per (endpoint, rate, currency): a price change in the middle of an hour or a day gives two rows,
each with the minutes priced at its rate, so nothing is ever priced at the wrong rate. Minute rows are deleted
after `PARETO_METERING_MINUTE_RETENTION_DAYS` (only once their hour has been rolled up); rollups are kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction

from .histograms import merge_parts
from .models import DirtyHour, UsageDay, UsageHour, UsageMinute
from .monthly import refresh_team_months

HOUR = dt.timedelta(hours=1)
_LOCK_HOUR, _LOCK_DAY = 7301, 7302

SUMMED = [
    "requests",
    "prompt_tokens",
    "generation_tokens",
    "running_sum",
    "waiting_sum",
    "kv_usage_sum",
    "gauge_samples",
    "scrapes",
    "gpu_seconds",
]
MAXED = ["running_max", "waiting_max", "kv_usage_max", "metric_replicas", "replicas", "gpus"]


def statement_zone() -> ZoneInfo:
    return ZoneInfo(settings.PARETO_STATEMENT_TIME_ZONE)


def local_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(statement_zone()).date()


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a statement-zone day, in UTC (23 or 25 hours across a DST change)."""
    zone = statement_zone()
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
    return start, end


@dataclass
class _Group:
    values: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    parts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    price_seconds: Decimal = Decimal(0)
    idle_gpu_seconds: int = 0
    minutes: int = 0


MINUTE_COLUMNS = ["endpoint_id", "team_id", "rate", "currency", "requests_by_reason", "histograms", *SUMMED, *MAXED]
ROLLUP_COLUMNS = [*MINUTE_COLUMNS, "price_seconds", "idle_gpu_seconds", "minutes"]


def _combine(rows: Iterable[dict[str, Any]], *, from_minutes: bool) -> dict[tuple[int, Decimal | None, str], _Group]:
    groups: dict[tuple[int, Decimal | None, str], _Group] = {}
    for row in rows:
        key = (row["endpoint_id"], row["rate"], row["currency"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(values={name: 0 for name in SUMMED + MAXED})
            group.values["team_id"] = row["team_id"]
        values = group.values
        for name in SUMMED:
            values[name] += row[name]
        for name in MAXED:
            if row[name] > values[name]:
                values[name] = row[name]
        for reason, count in (row["requests_by_reason"] or {}).items():
            group.reasons[reason] = group.reasons.get(reason, 0) + count
        for name, parts in (row["histograms"] or {}).items():
            group.parts.setdefault(name, []).extend(parts)
        if from_minutes:
            if row["rate"] is not None:
                group.price_seconds += row["rate"] * row["gpu_seconds"]
            if row["requests"] == 0 and row["running_max"] == 0:
                group.idle_gpu_seconds += row["gpu_seconds"]
            group.minutes += 1
        else:
            group.price_seconds += row["price_seconds"]
            group.idle_gpu_seconds += row["idle_gpu_seconds"]
            group.minutes += row["minutes"]
    return groups


def _rows(model: type[UsageHour] | type[UsageDay], groups: dict[Any, _Group], **period: Any) -> list[Any]:
    out = []
    for (endpoint_id, rate, currency), group in groups.items():
        out.append(
            model(
                endpoint_id=endpoint_id,
                rate=rate,
                currency=currency,
                requests_by_reason=group.reasons,
                histograms={name: merge_parts(parts) for name, parts in group.parts.items()},
                price_seconds=group.price_seconds,
                idle_gpu_seconds=group.idle_gpu_seconds,
                minutes=group.minutes,
                **group.values,
                **period,
            )
        )
    return out


def _lock(kind: int, number: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [kind, number])


def rollup_hour(hour: dt.datetime) -> int:
    """Recompute one hour's rows from its minute rows. Returns the number of rows written."""
    with transaction.atomic():
        _lock(_LOCK_HOUR, int(hour.timestamp() // 3600))
        minutes = UsageMinute.objects.filter(minute__gte=hour, minute__lt=hour + HOUR).values(*MINUTE_COLUMNS)
        groups = _combine(minutes.iterator(chunk_size=5000), from_minutes=True)
        UsageHour.objects.filter(hour=hour).delete()
        rows = _rows(UsageHour, groups, hour=hour)
        UsageHour.objects.bulk_create(rows, batch_size=2000)
    return len(rows)


def rollup_day(day: dt.date) -> int:
    """Recompute one statement-zone day's rows from its hourly rows."""
    start, end = day_bounds(day)
    with transaction.atomic():
        _lock(_LOCK_DAY, day.toordinal())
        hours = UsageHour.objects.filter(hour__gte=start, hour__lt=end).values(*ROLLUP_COLUMNS)
        groups = _combine(hours.iterator(chunk_size=5000), from_minutes=False)
        UsageDay.objects.filter(day=day).delete()
        rows = _rows(UsageDay, groups, day=day)
        UsageDay.objects.bulk_create(rows, batch_size=2000)
        refresh_team_months([day])  # finance's monthly totals follow their days
    return len(rows)


@dataclass
class RollupReport:
    hours: list[dt.datetime] = field(default_factory=list)
    days: list[dt.date] = field(default_factory=list)
    hour_rows: int = 0
    day_rows: int = 0


def rollup(*, until: dt.datetime | None = None, hours: Sequence[dt.datetime] | None = None) -> RollupReport:
    """Roll up every dirty hour (up to `until`), then the days they belong to.

    `hours`: roll up these hours whatever their markers say (the data generator and repairs use it)."""
    report = RollupReport()
    markers: list[tuple[int | None, dt.datetime, dt.datetime | None]]
    if hours is not None:
        markers = [(None, hour, None) for hour in sorted(set(hours))]
    else:
        qs = DirtyHour.objects.order_by("hour")
        if until is not None:
            qs = qs.filter(hour__lte=until)
        markers = [(pk, hour, marked_at) for pk, hour, marked_at in qs.values_list("pk", "hour", "marked_at")]
    days: set[dt.date] = set()
    for pk, hour, marked_at in markers:
        report.hour_rows += rollup_hour(hour)
        report.hours.append(hour)
        if pk is not None and marked_at is not None:
            DirtyHour.objects.filter(pk=pk, marked_at=marked_at).delete()
        days.add(local_day(hour))
    for day in sorted(days):
        report.day_rows += rollup_day(day)
        report.days.append(day)
    return report


def prune(*, now: dt.datetime | None = None) -> int:
    """Delete minute rows past the retention period whose hour has been rolled up. Rollups stay."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = (now - dt.timedelta(days=int(settings.PARETO_METERING_MINUTE_RETENTION_DAYS))).replace(
        minute=0, second=0, microsecond=0
    )
    pending = DirtyHour.objects.filter(hour__lt=cutoff).order_by("hour").values_list("hour", flat=True).first()
    if pending is not None:
        cutoff = min(cutoff, pending)
    deleted, _ = UsageMinute.objects.filter(minute__lt=cutoff).delete()
    return deleted
