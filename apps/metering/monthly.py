"""Monthly totals per team and currency (`TeamMonthCost`), precomputed from the daily rollups.

Finance's pages show a year of cost for every team; summing a year of `UsageDay` (hundreds of thousands of rows)
on every page view would make the page cost grow with history. Instead each month's totals are recomputed from its
days whenever one of its days is rolled up (`rollup.rollup_day` calls `refresh_team_months`), and whoever writes
`UsageDay` rows some other way (the data generator, repairs) calls it afterwards.

A refresh recomputes whole months (delete and insert in one transaction, under an advisory lock per month taken
after the day's lock), so it is idempotent, and two days of one month rolled up at the same time cannot lose each
other's totals: the second waits for the first to commit and then reads its rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, DecimalField, ExpressionWrapper, F, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from .models import TeamMonthCost, UsageDay

_LOCK_MONTH = 7303
_SECONDS_PER_HOUR = Decimal(3600)


def cost_of(price_seconds: Decimal | int | None) -> Decimal:
    """price_seconds / 3600 as a Decimal (28 significant digits). Not exact like `money.exact_cost` (a Fraction),
    but rounding it to a currency's minor unit gives the same result: price_seconds has 4 places, so the exact cost
    is a multiple of 1/36,000,000 and is either exactly on a half-unit (then the division is exact too) or at least
    that far from one, far beyond the 28th digit for any amount below 10^18. Decimals are what keep a table of 200
    teams x 12 months cheap enough to build on every page view (Fractions cost ten times more)."""
    return Decimal(price_seconds or 0) / _SECONDS_PER_HOUR


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _months_with_usage() -> set[dt.date]:
    with connection.cursor() as cursor:
        table = UsageDay._meta.db_table
        cursor.execute(f"SELECT DISTINCT date_trunc('month', day)::date FROM {table}")  # noqa: S608 - a table name
        return {row[0] for row in cursor.fetchall()}


def refresh_team_months(months: Iterable[dt.date] | None = None, team_ids: Iterable[int] | None = None) -> int:
    """Recompute `TeamMonthCost` for these months (any day of a month names it; None: every month that has daily
    rows, and rows of months that no longer have any are dropped), for these teams or all. Returns rows written."""
    teams = sorted(set(team_ids)) if team_ids is not None else None
    table = TeamMonthCost._meta.db_table
    usage = UsageDay._meta.db_table
    written = 0
    with transaction.atomic():
        if months is None:
            wanted = _months_with_usage()
            stale = TeamMonthCost.objects.exclude(month__in=wanted)
            if teams is not None:
                stale = stale.filter(team_id__in=teams)
            stale.delete()
        else:
            wanted = {month_of(m) for m in months}
        with connection.cursor() as cursor:
            for month in sorted(wanted):
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_MONTH, month.toordinal()])
                params: list[Any] = [month, month, _next_month(month)]
                team_filter = ""
                if teams is not None:
                    team_filter = " AND team_id = ANY(%s)"
                    params.append(teams)
                delete = TeamMonthCost.objects.filter(month=month)
                if teams is not None:
                    delete = delete.filter(team_id__in=teams)
                delete.delete()
                cursor.execute(
                    f"""
                    INSERT INTO {table} (team_id, month, currency, price_seconds, idle_price_seconds, gpu_seconds,
                        idle_gpu_seconds, prompt_tokens, generation_tokens, requests, updated_at)
                    SELECT team_id, %s, currency, SUM(price_seconds), SUM(idle_gpu_seconds * COALESCE(rate, 0)),
                        SUM(gpu_seconds), SUM(idle_gpu_seconds), SUM(prompt_tokens), SUM(generation_tokens),
                        SUM(requests), now()
                    FROM {usage}
                    WHERE day >= %s AND day < %s{team_filter}
                    GROUP BY team_id, currency
                    """,  # noqa: S608 - table names and a fixed clause; values are parameters
                    params,
                )
                written += cursor.rowcount
    return written


# --- reads -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonthCost:
    """One team's cost in one month and currency (exact), and the idle part of it."""

    team_id: int
    month: dt.date
    currency: str
    cost: Decimal
    idle_cost: Decimal
    gpu_seconds: int = 0
    idle_gpu_seconds: int = 0


def month_costs(months: Sequence[dt.date], *, team_ids: Iterable[int] | None = None) -> list[MonthCost]:
    """Priced cost per team, month and currency for these months, from `TeamMonthCost`. One query, whatever the
    length of the history: at most teams x months x currencies rows."""
    qs = TeamMonthCost.objects.filter(month__in=list(months)).exclude(currency="")
    if team_ids is not None:
        qs = qs.filter(team_id__in=list(team_ids))
    return [
        MonthCost(
            team_id=team_id,
            month=month,
            currency=currency,
            cost=cost_of(price),
            idle_cost=cost_of(idle),
            gpu_seconds=gpu,
            idle_gpu_seconds=idle_gpu,
        )
        for team_id, month, currency, price, idle, gpu, idle_gpu in qs.order_by().values_list(
            "team_id", "month", "currency", "price_seconds", "idle_price_seconds", "gpu_seconds", "idle_gpu_seconds"
        )
    ]


def team_totals(months: Sequence[dt.date], month: dt.date) -> list[tuple[int, str, Decimal, Decimal | None]]:
    """Per team and currency: the cost over `months` and in `month` (None: no row that month). One query, at most
    teams x currencies rows."""
    rows = (
        TeamMonthCost.objects.filter(month__in=list(months))
        .exclude(currency="")
        .values("team_id", "currency")
        .annotate(total=Sum("price_seconds"), this=Sum("price_seconds", filter=Q(month=month)))
        .order_by()
        .values_list("team_id", "currency", "total", "this")
    )
    return [
        (team_id, currency, cost_of(total), None if this is None else cost_of(this))
        for team_id, currency, total, this in rows
    ]


def month_series(months: Sequence[dt.date], team_ids: Iterable[int]) -> list[tuple[dt.date, str, int | None, Decimal]]:
    """Cost per month and currency of each of `team_ids`, and of all other teams together (team None). One query,
    at most months x (teams asked + 1) x currencies rows."""
    ids = list(team_ids)
    none = Value(None, output_field=IntegerField())
    top: Any = Case(When(team_id__in=ids, then=F("team_id")), default=none) if ids else none
    rows = (
        TeamMonthCost.objects.filter(month__in=list(months))
        .exclude(currency="")
        .annotate(top=top)
        .values("month", "currency", "top")
        .annotate(cost=Sum("price_seconds"))
        .order_by()
        .values_list("month", "currency", "top", "cost")
    )
    return [(month, currency, team_id, cost_of(cost)) for month, currency, team_id, cost in rows]


@dataclass(frozen=True)
class PeriodCost:
    """Cost of one endpoint, or one endpoint's day, in one currency (exact), with the idle part."""

    endpoint_id: int
    day: dt.date | None
    currency: str
    cost: Decimal
    idle_cost: Decimal
    gpu_seconds: int
    idle_gpu_seconds: int
    tokens: int
    requests: int


_IDLE_PRICE = Sum(
    ExpressionWrapper(F("idle_gpu_seconds") * Coalesce(F("rate"), Value(Decimal(0))), output_field=DecimalField())
)


def _period_costs(qs: QuerySet[UsageDay], by_day: bool) -> list[PeriodCost]:
    keys = ["endpoint_id", "currency", *(["day"] if by_day else [])]
    rows = (
        qs.exclude(currency="")
        .values(*keys)
        .annotate(
            s_price=Sum("price_seconds"),
            s_idle=_IDLE_PRICE,
            s_gpu=Sum("gpu_seconds"),
            s_idle_gpu=Sum("idle_gpu_seconds"),
            s_tokens=Sum(F("prompt_tokens") + F("generation_tokens")),
            s_req=Sum("requests"),
        )
        .order_by(*reversed(keys))
    )
    return [
        PeriodCost(
            endpoint_id=row["endpoint_id"],
            day=row.get("day"),
            currency=row["currency"],
            cost=cost_of(row["s_price"] or 0),
            idle_cost=cost_of(row["s_idle"] or 0),
            gpu_seconds=row["s_gpu"] or 0,
            idle_gpu_seconds=row["s_idle_gpu"] or 0,
            tokens=row["s_tokens"] or 0,
            requests=row["s_req"] or 0,
        )
        for row in rows
    ]


def endpoint_costs(team_id: int, month: dt.date) -> list[PeriodCost]:
    """Each endpoint's cost in a month (one query over the team's days of that month: bounded)."""
    last = _next_month(month) - dt.timedelta(days=1)
    return _period_costs(UsageDay.objects.filter(team_id=team_id, day__gte=month, day__lte=last), by_day=False)


def endpoint_day_costs(endpoint_id: int, month: dt.date) -> list[PeriodCost]:
    """One endpoint's cost per day of a month (at most a few rows a day)."""
    last = _next_month(month) - dt.timedelta(days=1)
    return _period_costs(UsageDay.objects.filter(endpoint_id=endpoint_id, day__gte=month, day__lte=last), by_day=True)
