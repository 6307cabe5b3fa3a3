"""Reads of metered usage, cost, budgets and statements that pages, the API and the services share.

Amounts come back exact (`fractions.Fraction`); templates and exports round them (money.format_money, statement
lines). Periods: months and days are in the statement time zone (PARETO_STATEMENT_TIME_ZONE, UTC by default).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, F, Max, QuerySet, Sum
from django.utils import timezone

from apps.accounts.permissions import Access
from apps.endpoints.models import Endpoint
from apps.teams.models import Budget, Team

from .accrual import HOLDING, REPLICAS_FOR_COST, PriceBook
from .histograms import cumulative_buckets, merge_histogram_maps, quantile
from .models import BudgetAlert, HistogramLayout, ScrapeTarget, Statement, StatementLine, UsageDay, UsageHour
from .money import exact_cost, format_money
from .rollup import day_bounds, statement_zone

HISTOGRAM_NAMES = {
    "e2e": "end-to-end latency",
    "ttft": "time to first token",
    "itl": "inter-token latency",
    "queue": "queue time",
}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


# --- months ----------------------------------------------------------------------------------------
def parse_month(value: str | None, *, field_name: str = "month") -> dt.date:
    """ "2026-10" -> date(2026, 10, 1); anything else is a field error."""
    match = _MONTH.match((value or "").strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValidationError({field_name: "Give a month as YYYY-MM, e.g. 2026-10."})
    return dt.date(int(match.group(1)), int(match.group(2)), 1)


def current_month(now: dt.datetime | None = None) -> dt.date:
    local = (now or timezone.now()).astimezone(statement_zone())
    return dt.date(local.year, local.month, 1)


def next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def previous_month(month: dt.date) -> dt.date:
    return dt.date(month.year - (month.month == 1), (month.month - 2) % 12 + 1, 1)


def month_last_day(month: dt.date) -> dt.date:
    return next_month(month) - dt.timedelta(days=1)


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a statement-zone month, in UTC."""
    return day_bounds(month)[0], day_bounds(month_last_day(month))[1]


def month_ended(month: dt.date, now: dt.datetime | None = None) -> bool:
    return (now or timezone.now()) >= month_bounds(month)[1]


# --- exact totals ----------------------------------------------------------------------------------
@dataclass
class LineTotals:
    team_id: int
    endpoint_id: int
    rate: Decimal | None
    currency: str
    gpu_seconds: int = 0
    idle_gpu_seconds: int = 0
    price_seconds: Decimal = Decimal(0)
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0

    @property
    def cost(self) -> Fraction:
        return exact_cost(self.price_seconds)


def metered_lines(month: dt.date, *, team_ids: Iterable[int] | None = None) -> list[LineTotals]:
    """The month's metered usage per (team, endpoint, rate, currency), from the daily rollups. One query."""
    qs = UsageDay.objects.filter(day__gte=month, day__lte=month_last_day(month))
    if team_ids is not None:
        qs = qs.filter(team_id__in=list(team_ids))
    rows = (
        qs.values("team_id", "endpoint_id", "rate", "currency")
        .annotate(
            s_gpu=Sum("gpu_seconds"),
            s_idle=Sum("idle_gpu_seconds"),
            s_price=Sum("price_seconds"),
            s_prompt=Sum("prompt_tokens"),
            s_gen=Sum("generation_tokens"),
            s_req=Sum("requests"),
        )
        .order_by("team_id", "endpoint_id", "rate")
    )
    return [
        LineTotals(
            team_id=row["team_id"],
            endpoint_id=row["endpoint_id"],
            rate=row["rate"],
            currency=row["currency"],
            gpu_seconds=row["s_gpu"] or 0,
            idle_gpu_seconds=row["s_idle"] or 0,
            price_seconds=row["s_price"] or Decimal(0),
            prompt_tokens=row["s_prompt"] or 0,
            generation_tokens=row["s_gen"] or 0,
            requests=row["s_req"] or 0,
        )
        for row in rows
    ]


def metered_cost_from_hours(month: dt.date) -> dict[tuple[int, str], Fraction]:
    """Exact metered cost per (team, currency) for a month, from the hourly rollups (what `metering_check` trusts)."""
    start, end = month_bounds(month)
    rows = (
        UsageHour.objects.filter(hour__gte=start, hour__lt=end)
        .values("team_id", "currency")
        .annotate(s_price=Sum("price_seconds"))
        .order_by()
    )
    return {(row["team_id"], row["currency"]): exact_cost(row["s_price"] or 0) for row in rows}


# --- percentiles -----------------------------------------------------------------------------------
def layouts_for(histogram_maps: Iterable[dict[str, list[dict[str, Any]]]]) -> dict[int, list[float]]:
    ids = {part["l"] for h in histogram_maps for parts in h.values() for part in parts}
    if not ids:
        return {}
    return dict(HistogramLayout.objects.filter(pk__in=ids).values_list("pk", "bounds"))


def percentile(
    histograms: dict[str, list[dict[str, Any]]], name: str, q: float, layouts: dict[int, list[float]]
) -> float | None:
    parts = histograms.get(name)
    if not parts:
        return None
    return quantile(q, cumulative_buckets(parts, layouts))


# --- endpoint summaries ----------------------------------------------------------------------------
@dataclass
class EndpointUsage:
    endpoint_id: int
    name: str = ""
    team_slug: str = ""
    gpu_type: str = ""
    state: str = ""
    gpu_seconds: int = 0
    idle_gpu_seconds: int = 0
    costs: dict[str, Fraction] = field(default_factory=dict)  # currency -> exact cost
    prompt_tokens: int = 0
    generation_tokens: int = 0
    requests: int = 0
    minutes: int = 0
    kv_usage_sum: float = 0.0
    gauge_samples: int = 0
    histograms: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    percentiles: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600

    @property
    def idle_gpu_hours(self) -> float:
        return self.idle_gpu_seconds / 3600

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generation_tokens

    @property
    def utilisation(self) -> float | None:
        """Share of GPU time with traffic (a finished request or one running in the minute)."""
        if not self.gpu_seconds:
            return None
        return 1 - self.idle_gpu_seconds / self.gpu_seconds

    @property
    def tokens_per_second(self) -> float | None:
        """Prompt + generation tokens per second over the metered minutes."""
        if not self.minutes:
            return None
        return self.tokens / (self.minutes * 60)

    @property
    def kv_usage(self) -> float | None:
        return self.kv_usage_sum / self.gauge_samples if self.gauge_samples else None

    def cost_per_million(self, currency: str) -> Fraction | None:
        cost = self.costs.get(currency)
        if cost is None or not self.tokens:
            return None
        return cost * 1_000_000 / self.tokens

    @property
    def cost_lines(self) -> list[dict[str, Any]]:
        return [
            {
                "currency": currency,
                "cost": cost,
                "display": format_money(cost, currency),
                "per_million": format_money(self.cost_per_million(currency), currency)
                if self.cost_per_million(currency) is not None
                else "—",
            }
            for currency, cost in sorted(self.costs.items())
        ]


def endpoint_usage(
    *, team_ids: Iterable[int] | None, start_day: dt.date, end_day: dt.date, endpoint_ids: Iterable[int] | None = None
) -> list[EndpointUsage]:
    """Per-endpoint usage, cost and latency percentiles over whole statement-zone days. Two to three queries."""
    qs = UsageDay.objects.filter(day__gte=start_day, day__lte=end_day)
    if team_ids is not None:
        qs = qs.filter(team_id__in=list(team_ids))
    if endpoint_ids is not None:
        qs = qs.filter(endpoint_id__in=list(endpoint_ids))
    rows = list(
        qs.values(
            "endpoint_id",
            "endpoint__name",
            "endpoint__team__slug",
            "endpoint__gpu_type__sku",
            "endpoint__state",
            "currency",
            "gpu_seconds",
            "idle_gpu_seconds",
            "price_seconds",
            "prompt_tokens",
            "generation_tokens",
            "requests",
            "minutes",
            "kv_usage_sum",
            "gauge_samples",
            "histograms",
        ).order_by("endpoint__team__slug", "endpoint__name", "endpoint_id")
    )
    summaries: dict[int, EndpointUsage] = {}
    maps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        summary = summaries.get(row["endpoint_id"])
        if summary is None:
            summary = summaries[row["endpoint_id"]] = EndpointUsage(
                endpoint_id=row["endpoint_id"],
                name=row["endpoint__name"],
                team_slug=row["endpoint__team__slug"],
                gpu_type=row["endpoint__gpu_type__sku"],
                state=row["endpoint__state"],
            )
        summary.gpu_seconds += row["gpu_seconds"]
        summary.idle_gpu_seconds += row["idle_gpu_seconds"]
        if row["currency"]:
            summary.costs[row["currency"]] = summary.costs.get(row["currency"], Fraction(0)) + exact_cost(
                row["price_seconds"]
            )
        summary.prompt_tokens += row["prompt_tokens"]
        summary.generation_tokens += row["generation_tokens"]
        summary.requests += row["requests"]
        summary.minutes += row["minutes"]
        summary.kv_usage_sum += row["kv_usage_sum"]
        summary.gauge_samples += row["gauge_samples"]
        maps[row["endpoint_id"]].append(row["histograms"])
    merged = {pk: merge_histogram_maps(histograms) for pk, histograms in maps.items()}
    layouts = layouts_for(merged.values())
    for pk, summary in summaries.items():
        summary.histograms = merged[pk]
        summary.percentiles = {
            name: {
                "p50": percentile(summary.histograms, name, 0.5, layouts),
                "p95": percentile(summary.histograms, name, 0.95, layouts),
            }
            for name in HISTOGRAM_NAMES
        }
    return list(summaries.values())


def usage_series(
    *, endpoint_ids: Sequence[int], start: dt.datetime, end: dt.datetime, resolution: str
) -> list[dict[str, Any]]:
    """Hourly (UTC) or daily (statement zone) rows of some endpoints: cost, GPU time, tokens, p50/p95 latency."""
    if resolution == "hour":
        qs: QuerySet[Any] = UsageHour.objects.filter(hour__gte=start, hour__lt=end).order_by("endpoint_id", "hour")
        period = "hour"
    else:
        zone = statement_zone()
        qs = UsageDay.objects.filter(
            day__gte=start.astimezone(zone).date(), day__lt=end.astimezone(zone).date()
        ).order_by("endpoint_id", "day")
        period = "day"
    rows = list(
        qs.filter(endpoint_id__in=list(endpoint_ids)).values(
            "endpoint_id",
            period,
            "rate",
            "currency",
            "gpu_seconds",
            "idle_gpu_seconds",
            "price_seconds",
            "prompt_tokens",
            "generation_tokens",
            "requests",
            "requests_by_reason",
            "histograms",
        )
    )
    layouts = layouts_for(row["histograms"] for row in rows)
    out = []
    for row in rows:
        cost = exact_cost(row["price_seconds"])
        out.append(
            {
                "endpoint": row["endpoint_id"],
                "start": row[period],
                "rate": row["rate"],
                "currency": row["currency"],
                "gpu_hours": row["gpu_seconds"] / 3600,
                "idle_gpu_hours": row["idle_gpu_seconds"] / 3600,
                "cost": str(round(Decimal(cost.numerator) / Decimal(cost.denominator), 10)),
                "prompt_tokens": row["prompt_tokens"],
                "generation_tokens": row["generation_tokens"],
                "requests": row["requests"],
                "requests_by_reason": row["requests_by_reason"],
                "latency": {
                    name: {
                        "p50": percentile(row["histograms"], name, 0.5, layouts),
                        "p95": percentile(row["histograms"], name, 0.95, layouts),
                    }
                    for name in HISTOGRAM_NAMES
                },
            }
        )
    return out


# --- budgets ---------------------------------------------------------------------------------------
@dataclass
class BudgetStatus:
    team_id: int
    month: dt.date
    amount: Decimal
    currency: str
    thresholds: list[int]
    spent: Fraction
    hourly_burn: Fraction
    forecast: Fraction
    other_currencies: dict[str, Fraction] = field(default_factory=dict)

    @property
    def percent(self) -> float | None:
        return float(self.spent / Fraction(self.amount) * 100) if self.amount else None

    @property
    def forecast_percent(self) -> float | None:
        return float(self.forecast / Fraction(self.amount) * 100) if self.amount else None

    @property
    def over(self) -> bool:
        return self.spent >= Fraction(self.amount)

    @property
    def crossed(self) -> list[int]:
        return [t for t in sorted(self.thresholds) if self.spent >= Fraction(self.amount) * t / 100]

    @property
    def spent_display(self) -> str:
        return format_money(self.spent, self.currency)

    @property
    def forecast_display(self) -> str:
        return format_money(self.forecast, self.currency)

    @property
    def amount_display(self) -> str:
        return format_money(self.amount, self.currency)


def month_to_date(team_ids: Iterable[int], month: dt.date) -> dict[int, dict[str, Fraction]]:
    """Exact cost per team and currency from the month's daily rollups (today's row is as of the last rollup)."""
    rows = (
        UsageDay.objects.filter(team_id__in=list(team_ids), day__gte=month, day__lte=month_last_day(month))
        .exclude(currency="")
        .values("team_id", "currency")
        .annotate(s_price=Sum("price_seconds"))
        .order_by()
    )
    out: dict[int, dict[str, Fraction]] = defaultdict(dict)
    for row in rows:
        out[row["team_id"]][row["currency"]] = exact_cost(row["s_price"] or 0)
    return out


def hourly_burn(team_ids: Iterable[int] | None, *, now: dt.datetime) -> dict[int, dict[str, Decimal]]:
    """What each team's endpoints that hold GPUs cost per hour now, per currency (None: every team). Exact: hourly
    prices have 4 places and GPUs are whole. Summed in the database per team and GPU type: two queries, one row per
    (team, type) however many endpoints."""
    qs = Endpoint.objects.filter(state__in=HOLDING)
    if team_ids is not None:
        qs = qs.filter(team_id__in=list(team_ids))
    groups = list(
        qs.values("team_id", "gpu_type_id").annotate(gpus=Sum(REPLICAS_FOR_COST * F("gpus_per_replica"))).order_by()
    )
    prices = PriceBook([g["gpu_type_id"] for g in groups])
    out: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for group in groups:
        price = prices.at(group["gpu_type_id"], now)
        if price is None or not group["gpus"]:
            continue
        rate, currency = price
        team = out[group["team_id"]]
        team[currency] = team.get(currency, Decimal(0)) + Decimal(rate) * group["gpus"]
    return out


def budget_statuses(teams: Sequence[Team], *, now: dt.datetime | None = None) -> dict[int, BudgetStatus]:
    """This month's spend against budget, with a month-end forecast, for the teams that have a budget.

    Forecast = spent so far + what the endpoints holding GPUs now cost per hour x the hours left in the month
    (GPU time is what is billed, so the current reservations are the best predictor)."""
    now = now or timezone.now()
    month = current_month(now)
    budgets = {b.team_id: b for b in Budget.objects.filter(team__in=teams)}
    if not budgets:
        return {}
    spent = month_to_date(budgets, month)
    burn = hourly_burn(budgets, now=now)
    hours_left = Fraction(max((month_bounds(month)[1] - now).total_seconds(), 0)) / 3600
    out = {}
    for team_id, budget in budgets.items():
        team_spent = spent.get(team_id, {})
        mine = team_spent.get(budget.currency, Fraction(0))
        rate = Fraction(burn.get(team_id, {}).get(budget.currency, Decimal(0)))
        out[team_id] = BudgetStatus(
            team_id=team_id,
            month=month,
            amount=budget.monthly_amount,
            currency=budget.currency,
            thresholds=list(budget.alert_thresholds or []),
            spent=mine,
            hourly_burn=rate,
            forecast=mine + rate * hours_left,
            other_currencies={c: v for c, v in team_spent.items() if c != budget.currency},
        )
    return out


def budget_status(team: Team, *, now: dt.datetime | None = None) -> BudgetStatus | None:
    return budget_statuses([team], now=now).get(team.pk)


def budget_block_reason(*, team: Team, now: dt.datetime | None = None) -> str | None:
    """Why the team may not request an endpoint now (its policy blocks requests while over budget), or None."""
    if not team.block_requests_over_budget:
        return None
    status = budget_status(team, now=now)
    if status is None or not status.over:
        return None
    return (
        f"{team.name} has spent {status.spent_display} of its {status.amount_display} budget for "
        f"{status.month:%B %Y}; its policy blocks new endpoint requests while over budget."
    )


def recent_alerts(team_ids: Iterable[int] | None, *, month: dt.date) -> QuerySet[BudgetAlert]:
    qs = BudgetAlert.objects.filter(month=month).select_related("team").order_by("-created_at")
    return qs if team_ids is None else qs.filter(team_id__in=list(team_ids))


# --- visibility ------------------------------------------------------------------------------------
def visible_teams(access: Access) -> QuerySet[Team]:
    return access.scope(Team.objects.all(), "pk").order_by("slug")


def statements_visible(*, access: Access, month: dt.date | None = None) -> QuerySet[Statement]:
    qs = access.scope(Statement.objects.all()).select_related("team", "closed_by", "generated_by")
    if month is not None:
        qs = qs.filter(month=month)
    return qs.annotate(line_count=Count("lines")).order_by("-month", "team__slug", "currency")


def statement_lines(statement: Statement) -> QuerySet[StatementLine]:
    return statement.lines.order_by("position", "id")


def statements_with_lines(*, access: Access, month: dt.date) -> list[Statement]:
    """Statements of a month with their lines prefetched (exports): two queries."""
    from django.db.models import Prefetch

    return list(
        access.scope(Statement.objects.filter(month=month))
        .select_related("team")
        .prefetch_related(Prefetch("lines", queryset=StatementLine.objects.order_by("position", "id")))
        .order_by("team__slug", "currency")
    )


def scrape_targets() -> QuerySet[ScrapeTarget]:
    return ScrapeTarget.objects.select_related("cluster").order_by("cluster__name", "url")


def last_rollup_day() -> dt.date | None:
    return UsageDay.objects.aggregate(last=Max("day"))["last"]
