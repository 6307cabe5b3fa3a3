"""Finance's cost charts: cost per team per month, budget use, a team's endpoints, an endpoint's days.

Inputs are plain rows from `monthly` (reads of `TeamMonthCost` and bounded ranges of `UsageDay`); amounts are
`Decimal`s of price_seconds / 3600 (see `monthly.cost_of`), rounded only when shown. A chart holds one currency:
amounts in different currencies are never added, so a page with two currencies gets one chart per currency.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from apps.core.charts import PALETTE, Chart, base_layout, number

from .money import minor_units, quantum
from .monthly import MonthCost

TOP_TEAMS = 9
OTHER = "Other teams"
OTHER_COLOUR = "#999999"  # neutral grey: reads as "the rest" whatever one's colour vision
BUSY_COLOUR, IDLE_COLOUR = PALETTE[0], PALETTE[1]
# Legend above the plot: below it, it collides with the slanted names of teams and endpoints.
LEGEND_ON_TOP = {"legend": {"orientation": "h", "x": 0, "y": 1.02, "xanchor": "left", "yanchor": "bottom"}}


def money(value: Decimal | None, currency: str) -> str:
    """Rounded to the currency's minor unit (half to even, as `money.round_money`), for tables and CSV."""
    return "" if value is None else str(value.quantize(_quantum(currency), rounding=ROUND_HALF_EVEN))


def show_money(value: Decimal | None, currency: str) -> str:
    """`1,234.50 USD`, as `money.format_money` shows it (which works on Fractions, slower by far for a big table)."""
    if value is None:
        return "—"
    amount = value.quantize(_quantum(currency), rounding=ROUND_HALF_EVEN)
    return f"{amount:,.{minor_units(currency or 'USD')}f} {currency}"


@functools.cache
def _quantum(currency: str) -> Decimal:
    return quantum(currency or "USD")


def _colour(index: int) -> dict[str, Any]:
    """Palette colour per trace; past the palette, the colours again with a hatch so no two traces look alike."""
    marker: dict[str, Any] = {"color": PALETTE[index % len(PALETTE)]}
    if index >= len(PALETTE):
        marker["pattern"] = {"shape": "/"}
    return marker


class LazyRows(list):  # type: ignore[type-arg]
    """A chart's table that is built only when it is read (the CSV, an inline table). Its length is known up front,
    so the page can tell an empty chart from a full one without building thousands of rows it does not show."""

    def __init__(self, length: int, build: Callable[[], Iterable[Sequence[Any]]]) -> None:
        super().__init__()
        self._length = length
        self._build: Callable[[], Iterable[Sequence[Any]]] | None = build

    def _fill(self) -> None:
        if self._build is not None:
            build, self._build = self._build, None
            super().extend(build())

    def __len__(self) -> int:
        return self._length if self._build is not None else super().__len__()

    def __iter__(self) -> Iterator[Any]:
        self._fill()
        return super().__iter__()

    def __getitem__(self, index: Any) -> Any:
        self._fill()
        return super().__getitem__(index)


@dataclass
class TeamMonths:
    """What the stacked bars of one currency need: each team's cost over the months (to rank them), and the cost
    per month of the top teams (team id) and of the rest (None)."""

    currency: str
    totals: dict[int, Decimal]
    series: dict[tuple[int | None, dt.date], Decimal]


def top_teams(totals: dict[int, Decimal], team_names: dict[int, str]) -> list[int]:
    ranked = sorted(totals, key=lambda t: (-totals[t], team_names.get(t, ""), t))
    return ranked[:TOP_TEAMS]


def summarise(rows: Iterable[MonthCost], currency: str, team_names: dict[int, str]) -> TeamMonths:
    """TeamMonths from every team x month row (what `monthly.team_totals` + `monthly.month_series` give in SQL)."""
    mine = [r for r in rows if r.currency == currency]
    totals: dict[int, Decimal] = defaultdict(Decimal)
    for row in mine:
        totals[row.team_id] += row.cost
    top = set(top_teams(totals, team_names))
    series: dict[tuple[int | None, dt.date], Decimal] = defaultdict(Decimal)
    for row in mine:
        series[(row.team_id if row.team_id in top else None, row.month)] += row.cost
    return TeamMonths(currency=currency, totals=dict(totals), series=dict(series))


def month_table(
    rows: Iterable[MonthCost], *, months: Sequence[dt.date], team_names: dict[int, str], currency: str
) -> list[list[str]]:
    """Every team (with cost in the currency) x every month: the CSV of the stacked bars."""
    cells: dict[tuple[int, dt.date], Decimal] = defaultdict(Decimal)
    for row in rows:
        if row.currency == currency:
            cells[(row.team_id, row.month)] += row.cost
    teams = sorted({t for t, _ in cells}, key=lambda t: (team_names.get(t, ""), t))
    labels = [(m, f"{m:%Y-%m}") for m in months]
    zero = money(Decimal(0), currency)
    return [
        [team_names.get(t, str(t)), label, currency, money(cells[(t, m)], currency) if (t, m) in cells else zero]
        for t in teams
        for m, label in labels
    ]


def team_month_bars(
    summary: TeamMonths,
    *,
    months: Sequence[dt.date],
    team_names: dict[int, str],
    table: Callable[[], Iterable[Sequence[Any]]],
) -> Chart:
    """Stacked bars of cost per team per month in one currency: the top teams by cost over the months each as a
    trace, the rest summed into "Other teams". The table (and CSV), built by `table` only when read, has every
    team x month."""
    currency = summary.currency
    top = top_teams(summary.totals, team_names)
    x = [f"{m:%Y-%m}" for m in months]
    rest = len(summary.totals) - len(top)
    other: dict[dt.date, Decimal] = defaultdict(Decimal)
    for (team_id, month), cost in summary.series.items():
        if team_id is None or team_id not in top:
            other[month] += cost
    hover = f"%{{y:,.2f}} {currency}<extra>%{{fullData.name}}</extra>"
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": team_names.get(team_id, str(team_id)),
            "x": x,
            "y": [number(summary.series.get((team_id, m), Decimal(0)), 2) for m in months],
            "marker": _colour(index),
            "hovertemplate": hover,
        }
        for index, team_id in enumerate(top)
    ]
    if rest:
        data.append(
            {
                "type": "bar",
                "name": f"{OTHER} ({rest})",
                "x": x,
                "y": [number(other.get(m, Decimal(0)), 2) for m in months],
                "marker": {"color": OTHER_COLOUR},
                "hovertemplate": hover,
            }
        )
    return Chart(
        key=f"teams-{currency.lower()}",
        title=f"Cost per team per month ({currency})",
        description=(
            f"Metered cost in {currency} for {x[0]} to {x[-1]}: the {TOP_TEAMS} teams that cost most over these "
            "months, the others summed."
        ),
        data=data,
        layout=base_layout(barmode="stack", yaxis={"title": {"text": currency}}, height=380),
        columns=["team", "month", "currency", "cost"],
        rows=LazyRows(len(summary.totals) * len(months), table),
        inline_table_max=0,
        empty_message="No metered cost in these months.",
        empty_hint="Cost appears once endpoints have run and their hours have been rolled up.",
    )


@dataclass
class BudgetLine:
    """A team's month against its budget (amounts in the budget currency)."""

    team_id: int
    slug: str
    name: str
    budget: Decimal | None
    currency: str  # the budget's currency, or the team's only/first currency without a budget
    actual: Decimal
    forecast: Decimal | None  # current month only
    other: dict[str, Decimal]  # cost in currencies other than `currency`: shown apart, never added

    @property
    def expected(self) -> Decimal:
        """What the month will cost: the forecast while it runs, the actual once it has ended."""
        return self.forecast if self.forecast is not None else self.actual

    @property
    def variance(self) -> Decimal | None:
        """Budget minus forecast (current month) or minus actual (past months): negative is over budget."""
        return None if self.budget is None else self.budget - self.expected

    @property
    def percent_used(self) -> float | None:
        return float(self.actual / self.budget * 100) if self.budget else None

    @property
    def percent_expected(self) -> float | None:
        return float(self.expected / self.budget * 100) if self.budget else None

    @property
    def over(self) -> bool:
        return self.variance is not None and self.variance < 0


def budget_chart(lines: Sequence[BudgetLine], *, month: dt.date, current: bool, limit: int = 20) -> Chart:
    """Budget used per team in percent (so teams with budgets in different currencies share one axis): actual,
    and for the running month the forecast on top; the teams closest to or over budget first."""
    budgeted = [line for line in lines if line.budget]
    expected = {line.team_id: line.percent_expected or 0 for line in budgeted}
    ranked = sorted(budgeted, key=lambda line: (-expected[line.team_id], line.slug))[:limit]
    x = [line.name for line in ranked]
    data: list[dict[str, Any]] = [
        {
            "type": "bar",
            "name": "Actual",
            "x": x,
            "y": [round(line.percent_used or 0, 1) for line in ranked],
            "marker": {"color": PALETTE[0]},
            "hovertemplate": "%{y:.1f}% of budget<extra>actual</extra>",
        }
    ]
    if current:
        data.append(
            {
                "type": "bar",
                "name": "Forecast to month end",
                "x": x,
                "y": [round((line.percent_expected or 0) - (line.percent_used or 0), 1) for line in ranked],
                "marker": {"color": PALETTE[5], "pattern": {"shape": "/"}},
                "hovertemplate": "+%{y:.1f}%<extra>forecast</extra>",
            }
        )
    layout = base_layout(
        barmode="stack",
        yaxis={"title": {"text": "% of budget"}, "ticksuffix": "%"},
        shapes=[
            {
                "type": "line",
                "xref": "paper",
                "x0": 0,
                "x1": 1,
                "y0": 100,
                "y1": 100,
                "line": {"color": PALETTE[3], "dash": "dash", "width": 2},
            }
        ],
        height=380,
        margin={"t": 40},
        **LEGEND_ON_TOP,
    )

    def table() -> list[list[str]]:
        return [
            [
                line.name,
                line.currency,
                money(line.budget, line.currency),
                money(line.actual, line.currency),
                money(line.forecast, line.currency),
                money(line.variance, line.currency),
                "" if line.percent_used is None else f"{line.percent_used:.1f}",
            ]
            for line in sorted(budgeted, key=lambda line: line.slug)
        ]

    what = "actual and forecast" if current else "actual"
    return Chart(
        key="budget",
        title=f"Budget used, {month:%B %Y}",
        description=(
            f"Share of each team's monthly budget, {what}; the dashed line is the budget. "
            f"The {min(limit, len(budgeted))} teams closest to or over budget."
        ),
        data=data,
        layout=layout,
        columns=["team", "currency", "budget", "actual", "forecast", "variance", "percent used"],
        rows=LazyRows(len(budgeted), table),
        inline_table_max=0,
        empty_message="No team has a budget.",
        empty_hint="Set budgets on the teams' pages to compare cost against them.",
    )


@dataclass(frozen=True)
class Slice:
    """Cost of one thing (an endpoint, a day, a month) in one currency, busy and idle (exact)."""

    label: str
    currency: str
    cost: Decimal
    idle_cost: Decimal

    @property
    def busy_cost(self) -> Decimal:
        return self.cost - self.idle_cost


def busy_idle_bars(
    slices: Sequence[Slice],
    *,
    key: str,
    title: str,
    currency: str,
    label: str,
    description: str,
    empty_message: str,
    empty_hint: str = "",
    x_type: str = "category",
) -> Chart:
    """Stacked bars, busy cost under idle cost, one bar per slice (slices of other currencies are left out)."""
    mine = [s for s in slices if s.currency == currency]
    x = [s.label for s in mine]
    data = [
        {
            "type": "bar",
            "name": "Busy",
            "x": x,
            "y": [number(s.busy_cost, 2) for s in mine],
            "marker": {"color": BUSY_COLOUR},
            "hovertemplate": f"%{{y:,.2f}} {currency}<extra>busy</extra>",
        },
        {
            "type": "bar",
            "name": "Idle",
            "x": x,
            "y": [number(s.idle_cost, 2) for s in mine],
            "marker": {"color": IDLE_COLOUR, "pattern": {"shape": "/"}},
            "hovertemplate": f"%{{y:,.2f}} {currency}<extra>idle</extra>",
        },
    ]
    rows = [
        [s.label, currency, money(s.cost, currency), money(s.busy_cost, currency), money(s.idle_cost, currency)]
        for s in mine
    ]
    return Chart(
        key=key,
        title=title,
        description=description,
        data=data if mine else [],
        layout=base_layout(
            barmode="stack",
            xaxis={"type": x_type},
            yaxis={"title": {"text": currency}},
            hovermode="closest",
            margin={"t": 40},
            **LEGEND_ON_TOP,
        ),
        columns=[label, "currency", "cost", "busy", "idle"],
        rows=rows,  # type: ignore[arg-type]
        empty_message=empty_message,
        empty_hint=empty_hint,
    )


def slice_currencies(slices: Iterable[Slice]) -> list[str]:
    counts: dict[str, int] = defaultdict(int)
    for s in slices:
        if s.currency:
            counts[s.currency] += 1
    return sorted(counts, key=lambda c: (-counts[c], c)) or [""]
