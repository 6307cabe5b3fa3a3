"""Finance's dashboard: cost per team per month, budget against actual and forecast, the month's statements, and a
drill-down from a team to its endpoints to an endpoint's days.

Page cost must not grow with history or with the number of teams: the twelve months of per-team cost come from the
precomputed `TeamMonthCost` (a few hundred rows), the forecast from one aggregate over endpoints holding GPUs, and
the drill-down pages read one team's or one endpoint's days of one month.

Finance and admins only; everyone else gets a 403 (anonymous: the sign-in page).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.template import engines
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.permissions import Access, access_for, require
from apps.core.charts import Chart, render_dashboard
from apps.endpoints.models import Endpoint
from apps.metering import charts as cost_charts
from apps.metering import monthly, selectors
from apps.metering.charts import BudgetLine, Slice, show_money
from apps.metering.models import Statement
from apps.teams.models import Team

from ..tabs import dashboard_tabs

MONTHS_SHOWN = 12
PAGE_SIZE = 25
STATEMENTS_SHOWN = 25
SORTS: dict[str, Callable[[BudgetLine], Any]] = {
    "team": lambda line: line.slug,
    "budget": lambda line: line.budget,
    "actual": lambda line: line.actual,
    "forecast": lambda line: line.expected,
    "variance": lambda line: line.variance,
    "used": lambda line: line.percent_used,
}
DEFAULT_SORT = "team"
# An htmx request for a new month swaps only the page's body: the templates extend `base`, which is then this
# one-block template instead of the dashboard layout (Django 5.2 has no template partials).
_BODY_ONLY = engines["django"].from_string("{% block body %}{% endblock %}")


def finance_or_admin(access: Access) -> bool:
    return access.is_finance or access.is_admin


def _month(request: HttpRequest, default: dt.date) -> tuple[dt.date, str]:
    """`?month=YYYY-MM`, or the default with a message to show for anything else."""
    raw = request.GET.get("month")
    if not raw:
        return default, ""
    try:
        return selectors.parse_month(raw), ""
    except ValidationError:
        return default, f"Unknown month {raw[:20]!r}: give one as YYYY-MM. Showing {default:%B %Y}."


def _months_ending(month: dt.date, count: int) -> list[dt.date]:
    months = [month]
    while len(months) < count:
        months.append(selectors.previous_month(months[-1]))
    return months[::-1]


def _hours_left(month: dt.date, now: dt.datetime) -> Decimal:
    return Decimal(max(int((selectors.month_bounds(month)[1] - now).total_seconds()), 0)) / 3600


def _query(request: HttpRequest, **changes: str | None) -> str:
    """The current query string with some parameters changed (None drops one); never the CSV parameter."""
    params: QueryDict = request.GET.copy()
    params.pop("csv", None)
    for key, value in changes.items():
        params.pop(key, None)
        if value is not None:
            params[key] = value
    return params.urlencode()


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], charts: Sequence[Chart], csv_name: str
) -> HttpResponse:
    partial = bool(getattr(request, "htmx", False)) and not request.htmx.boosted  # type: ignore[attr-defined]
    access = access_for(request.user)
    context = context | {
        "base": _BODY_ONLY if partial else "dashboards/base.html",
        "tabs": [] if partial else dashboard_tabs(access),
        "tab": "finance",
    }
    return render_dashboard(request, template, context, charts, partial=template, csv_name=csv_name)


def _sorted(lines: list[BudgetLine], sort: str) -> list[BudgetLine]:
    """Sort by a column; rows with no value (no budget) last whichever the direction."""
    descending = sort.startswith("-")
    key = SORTS[sort.lstrip("-")]
    present = [line for line in lines if key(line) is not None]
    missing = [line for line in lines if key(line) is None]
    present.sort(key=lambda line: line.slug)
    present.sort(key=key, reverse=descending)
    return present + sorted(missing, key=lambda line: line.slug)


@dataclass(frozen=True)
class TeamBudget:
    """What the budget table needs of a team (plain values: 200 model instances cost more than the whole table)."""

    pk: int
    slug: str
    name: str
    amount: Decimal | None
    currency: str


def _team_budgets() -> list[TeamBudget]:
    return [
        TeamBudget(*row)
        for row in Team.objects.order_by("slug").values_list(
            "pk", "slug", "name", "budget__monthly_amount", "budget__currency"
        )
    ]


def _budget_lines(
    teams: Sequence[TeamBudget],
    costs: dict[int, dict[str, Decimal]],
    *,
    burn: dict[int, dict[str, Decimal]] | None,
    hours_left: Decimal,
    snapshots: dict[int, tuple[Decimal, str]],
) -> list[BudgetLine]:
    """Per team: the month's cost in the budget's currency (other currencies apart), its forecast while the month
    runs, against the budget (for a past month, the one recorded on its statement when there is one)."""
    lines = []
    for team in teams:
        team_costs = costs.get(team.pk, {})
        amount: Decimal | None = None
        currency = ""
        snapshot = snapshots.get(team.pk)
        if burn is None and snapshot is not None:
            amount, currency = snapshot
        elif team.amount is not None:
            amount, currency = team.amount, team.currency
        if not currency:
            currency = max(team_costs, key=lambda c: (team_costs[c], c)) if team_costs else ""
        actual = team_costs.get(currency, Decimal(0))
        forecast = None
        if burn is not None and currency:
            forecast = actual + burn.get(team.pk, {}).get(currency, Decimal(0)) * hours_left
        lines.append(
            BudgetLine(
                team_id=team.pk,
                slug=team.slug,
                name=team.name,
                budget=amount,
                currency=currency,
                actual=actual,
                forecast=forecast,
                other={c: v for c, v in sorted(team_costs.items()) if c != currency},
            )
        )
    return lines


def _display(line: BudgetLine, url: str = "") -> dict[str, Any]:
    """A table row as text (a template loop with a tag per cell costs more than the rest of the page)."""

    def show(value: Decimal | None) -> str:
        return "—" if value is None or not line.currency else show_money(value, line.currency)

    return {
        "line": line,
        "url": url,
        "budget": "none" if line.budget is None else show(line.budget),
        "actual": show(line.actual),
        "forecast": show(line.forecast),
        "variance": show(line.variance),
        "used": "—" if line.percent_used is None else f"{line.percent_used:.1f}%",
        "other": ", ".join(show_money(v, c) for c, v in line.other.items()),
    }


@require(finance_or_admin)
@require_GET
def finance_dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    this_month = selectors.current_month(now)
    month, month_error = _month(request, this_month)
    sort = request.GET.get("sort") or DEFAULT_SORT
    sort_error = ""
    if sort.lstrip("-") not in SORTS:
        sort_error = f"Unknown sort {sort[:20]!r}: sorted by team."
        sort = DEFAULT_SORT
    current = month == this_month
    months = _months_ending(month, MONTHS_SHOWN)

    teams = _team_budgets()
    range_totals = monthly.team_totals(months, month)
    statements: list[dict[str, Any]] = [
        dict(row)
        for row in Statement.objects.filter(month=month)
        .order_by("team__slug", "currency")
        .values(
            "pk",
            "team_id",
            "team__name",
            "currency",
            "status",
            "total",
            "closed_at",
            "budget_amount",
            "budget_currency",
        )
    ]
    for statement in statements:
        statement["is_closed"] = statement["status"] == Statement.Status.CLOSED
    burn = selectors.hourly_burn(None, now=now) if current else None

    costs: dict[int, dict[str, Decimal]] = defaultdict(dict)
    by_currency: dict[str, dict[int, Decimal]] = defaultdict(dict)
    for team_id, currency, total, this in range_totals:
        by_currency[currency][team_id] = total
        if this is not None:
            costs[team_id][currency] = this
    snapshots = {
        s["team_id"]: (s["budget_amount"], s["budget_currency"]) for s in statements if s["budget_amount"] is not None
    }
    lines = _budget_lines(teams, costs, burn=burn, hours_left=_hours_left(month, now), snapshots=snapshots)

    names = {team.pk: team.name for team in teams}
    currencies = sorted(by_currency, key=lambda c: (-len(by_currency[c]), c))
    if not currencies:
        budget_currencies = [line.currency for line in lines if line.budget is not None]
        currencies = [max(set(budget_currencies), key=budget_currencies.count) if budget_currencies else "USD"]
    tops = {c: cost_charts.top_teams(by_currency.get(c, {}), names) for c in currencies}
    series: dict[str, dict[tuple[int | None, dt.date], Decimal]] = defaultdict(dict)
    if by_currency:
        for m, currency, top_id, cost in monthly.month_series(months, {t for top in tops.values() for t in top}):
            series[currency][(top_id, m)] = cost
    full: list[monthly.MonthCost] = []

    def table(currency: str) -> list[list[str]]:
        if not full:  # every team x month: only for the CSV, so read only then
            full.extend(monthly.month_costs(months))
        return cost_charts.month_table(full, months=months, team_names=names, currency=currency)

    charts = [
        cost_charts.team_month_bars(
            cost_charts.TeamMonths(currency=c, totals=by_currency.get(c, {}), series=series.get(c, {})),
            months=months,
            team_names=names,
            table=functools.partial(table, c),
        )
        for c in currencies
    ]
    charts.append(cost_charts.budget_chart(lines, month=month, current=current))

    totals: dict[str, Decimal] = defaultdict(Decimal)
    for team_costs in costs.values():
        for currency, cost in team_costs.items():
            totals[currency] += cost
    ordered = _sorted(lines, sort)
    page = Paginator(ordered, PAGE_SIZE).get_page(request.GET.get("page"))
    base_sort = sort.lstrip("-")
    headers = [
        {
            "key": key,
            "label": label,
            "url": "?" + _query(request, sort=f"-{key}" if sort == key else key, page=None),
            "active": key == base_sort,
            "descending": sort.startswith("-"),
            "aria": ("descending" if sort.startswith("-") else "ascending") if key == base_sort else "none",
        }
        for key, label in (
            ("team", "Team"),
            ("budget", "Budget"),
            ("actual", "Actual"),
            ("forecast", "Forecast" if current else "Forecast (running month only)"),
            ("variance", "Variance"),
            ("used", "% used"),
        )
    ]
    team_url = reverse("dashboards:finance_team", args=["__slug__"]) + f"?month={month:%Y-%m}"
    open_count = sum(1 for s in statements if not s["is_closed"])
    statements_shown = sorted(statements, key=lambda s: s["is_closed"])[:STATEMENTS_SHOWN]  # stable: open first
    context = {
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "this_month": this_month,
        "current": current,
        "month_ended": selectors.month_ended(month, now),
        "errors": [e for e in (month_error, sort_error) if e],
        "sort": sort,
        "headers": headers,
        "page_obj": page,
        "rows": [_display(line, team_url.replace("__slug__", line.slug)) for line in page.object_list],
        "team_count": len(teams),
        "budgeted": sum(1 for line in lines if line.budget is not None),
        "over": sum(1 for line in lines if line.over),
        "totals": [show_money(v, c) for c, v in sorted(totals.items())],
        "statements": statements_shown,
        "statement_count": len(statements),
        "open_count": open_count,
        "closed_count": len(statements) - open_count,
        "can_manage": access_for(request.user).can_edit_budget(),
        "previous": f"{selectors.previous_month(month):%Y-%m}",
        "next": f"{selectors.next_month(month):%Y-%m}" if month < this_month else None,
        "time_zone": selectors.statement_zone().key,
    }
    return _page(request, "dashboards/finance.html", context, charts, csv_name=f"finance-{month:%Y-%m}")


def _slices(periods: Sequence[monthly.PeriodCost], label: Callable[[monthly.PeriodCost], str]) -> list[Slice]:
    return [Slice(label=label(p), currency=p.currency, cost=p.cost, idle_cost=p.idle_cost) for p in periods]


@require(finance_or_admin)
@require_GET
def finance_team(request: HttpRequest, slug: str) -> HttpResponse:
    access = access_for(request.user)
    team = get_object_or_404(access.scope(Team.objects.select_related("budget"), "pk"), slug=slug)
    now = timezone.now()
    this_month = selectors.current_month(now)
    month, month_error = _month(request, this_month)
    current = month == this_month
    months = _months_ending(month, MONTHS_SHOWN)

    endpoints: dict[int, Any] = {
        e["pk"]: e
        for e in Endpoint.objects.filter(team=team)
        .order_by("name", "pk")
        .values("pk", "name", "state", "gpu_type__sku", "deleted_at")
    }
    periods = monthly.endpoint_costs(team.pk, month)
    history = monthly.month_costs(months, team_ids=[team.pk])
    burn = selectors.hourly_burn([team.pk], now=now) if current else None

    def name(p: monthly.PeriodCost) -> str:
        return str(endpoints.get(p.endpoint_id, {}).get("name") or f"endpoint {p.endpoint_id}")

    per_endpoint = sorted(periods, key=lambda p: (-p.cost, name(p)))
    slices = _slices(per_endpoint, name)
    month_slices = [
        Slice(label=f"{r.month:%Y-%m}", currency=r.currency, cost=r.cost, idle_cost=r.idle_cost)
        for r in sorted(history, key=lambda r: r.month)
    ]
    charts: list[Chart] = []
    for currency in cost_charts.slice_currencies(slices):
        charts.append(
            cost_charts.busy_idle_bars(
                slices,
                key=f"endpoints-{currency.lower() or 'none'}",
                title=f"Cost per endpoint, {month:%B %Y}" + (f" ({currency})" if currency else ""),
                currency=currency,
                label="endpoint",
                description="Each endpoint's metered cost in the month: busy GPU time, and idle GPU time above it.",
                empty_message=f"No metered cost for {team.name} in {month:%B %Y}.",
                empty_hint="Cost appears once the team's endpoints have run and their hours have been rolled up.",
            )
        )
    for currency in cost_charts.slice_currencies(month_slices):
        charts.append(
            cost_charts.busy_idle_bars(
                month_slices,
                key=f"months-{currency.lower() or 'none'}",
                title="Cost per month" + (f" ({currency})" if currency else ""),
                currency=currency,
                label="month",
                description=f"The team's cost in the {MONTHS_SHOWN} months to {month:%B %Y}, busy and idle.",
                empty_message=f"No metered cost for {team.name} in these months.",
            )
        )
    costs: dict[int, dict[str, Decimal]] = defaultdict(dict)
    for p in periods:
        costs[team.pk][p.currency] = costs[team.pk].get(p.currency, Decimal(0)) + p.cost
    snapshot = (
        Statement.objects.filter(team=team, month=month, budget_amount__isnull=False)
        .order_by("currency")
        .values_list("budget_amount", "budget_currency")
        .first()
        if not current
        else None
    )
    budget = getattr(team, "budget", None)
    (line,) = _budget_lines(
        [
            TeamBudget(
                team.pk,
                team.slug,
                team.name,
                budget.monthly_amount if budget else None,
                budget.currency if budget else "",
            )
        ],
        costs,
        burn=burn,
        hours_left=_hours_left(month, now),
        snapshots={team.pk: (snapshot[0], snapshot[1])} if snapshot and snapshot[0] is not None else {},
    )
    table = []
    seen: set[int] = set()
    for p in per_endpoint:
        seen.add(p.endpoint_id)
        table.append(
            {
                "pk": p.endpoint_id,
                "name": name(p),
                "state": endpoints.get(p.endpoint_id, {}).get("state", ""),
                "gpu_type": endpoints.get(p.endpoint_id, {}).get("gpu_type__sku", ""),
                "cost": show_money(p.cost, p.currency),
                "idle": show_money(p.idle_cost, p.currency),
                "idle_share": float(p.idle_cost / p.cost * 100) if p.cost else None,
                "gpu_hours": p.gpu_seconds / 3600,
                "tokens": p.tokens,
            }
        )
    unused = [e for pk, e in endpoints.items() if pk not in seen and e["deleted_at"] is None]
    context = {
        "team": team,
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "current": current,
        "errors": [month_error] if month_error else [],
        "budget": _display(line),
        "table": table,
        "unused": unused,
        "previous": f"{selectors.previous_month(month):%Y-%m}",
        "next": f"{selectors.next_month(month):%Y-%m}" if month < this_month else None,
        "time_zone": selectors.statement_zone().key,
    }
    return _page(request, "dashboards/finance_team.html", context, charts, csv_name=f"finance-{team.slug}")


@require(finance_or_admin)
@require_GET
def finance_endpoint(request: HttpRequest, pk: int) -> HttpResponse:
    access = access_for(request.user)
    endpoint = get_object_or_404(access.scope(Endpoint.objects.select_related("team", "gpu_type")), pk=pk)
    now = timezone.now()
    this_month = selectors.current_month(now)
    month, month_error = _month(request, this_month)
    periods = monthly.endpoint_day_costs(endpoint.pk, month)

    # Every day of the month so far, so a day with no cost shows as a gap rather than vanishing.
    today = now.astimezone(selectors.statement_zone()).date()
    last = min(selectors.month_last_day(month), max(today, month))
    days = [month + dt.timedelta(days=i) for i in range((last - month).days + 1)]
    by_day: dict[tuple[dt.date, str], list[Decimal]] = {}
    zero = [Decimal(0), Decimal(0)]
    for p in periods:
        assert p.day is not None
        cell = by_day.setdefault((p.day, p.currency), [Decimal(0), Decimal(0)])
        cell[0] += p.cost
        cell[1] += p.idle_cost
    currencies = sorted({c for _, c in by_day}) or [""]
    charts: list[Chart] = []
    for currency in currencies:
        slices = [
            Slice(
                label=day.isoformat(),
                currency=currency,
                cost=by_day.get((day, currency), zero)[0],
                idle_cost=by_day.get((day, currency), zero)[1],
            )
            for day in days
        ]
        chart = cost_charts.busy_idle_bars(
            slices if by_day else [],
            key=f"days-{currency.lower() or 'none'}",
            title=f"Cost per day, {month:%B %Y}" + (f" ({currency})" if currency else ""),
            currency=currency,
            label="day",
            description="The endpoint's metered cost per day: busy GPU time, and idle GPU time above it.",
            empty_message=f"No metered cost for {endpoint.name} in {month:%B %Y}.",
            empty_hint="Cost appears once the endpoint has run and its hours have been rolled up.",
            x_type="date",
        )
        charts.append(chart)
    totals: dict[str, list[Decimal]] = {}
    for (_, currency), (cost, idle) in by_day.items():
        total = totals.setdefault(currency, [Decimal(0), Decimal(0)])
        total[0] += cost
        total[1] += idle
    context = {
        "endpoint": endpoint,
        "team": endpoint.team,
        "month": month,
        "month_value": f"{month:%Y-%m}",
        "errors": [month_error] if month_error else [],
        "totals": [
            {"cost": show_money(cost, c), "idle": show_money(idle, c), "currency": c}
            for c, (cost, idle) in sorted(totals.items())
        ],
        "gpu_hours": sum(p.gpu_seconds for p in periods) / 3600,
        "idle_gpu_hours": sum(p.idle_gpu_seconds for p in periods) / 3600,
        "tokens": sum(p.tokens for p in periods),
        "requests": sum(p.requests for p in periods),
        "previous": f"{selectors.previous_month(month):%Y-%m}",
        "next": f"{selectors.next_month(month):%Y-%m}" if month < this_month else None,
        "time_zone": selectors.statement_zone().key,
    }
    return _page(request, "dashboards/finance_endpoint.html", context, charts, csv_name=f"finance-{endpoint.name}")
