"""The frontier: where each endpoint sits on the quality / latency / cost tradeoff.

A scatter of cost per 1M tokens (y) against p95 end-to-end latency (x), one point per endpoint, sized by its model's
quality score where one is recorded. The non-dominated points (no other point is at least as fast and as cheap, and
strictly better in one of the two) are joined by a line: the cheapest way to get each latency.

Costs in different currencies are never compared: each currency gets its own points and its own frontier.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from html import escape
from typing import Any

from apps.core.charts import PALETTE, Chart, base_layout

NO_SCORE_SIZE = 7
MIN_SIZE, MAX_SIZE = 10, 30  # quality score 0 .. 100


@dataclass(slots=True)
class FrontierPoint:
    endpoint_id: int
    endpoint: str  # "team/name"
    team: str
    model: str
    score: Decimal | None
    latency: float  # p95 end-to-end, seconds
    cost_per_million: Decimal
    currency: str
    tokens: int = 0
    requests: int = 0
    on_frontier: bool = False

    @property
    def score_label(self) -> str:
        return "no score" if self.score is None else f"{self.score:g}"


def mark_frontier(points: Sequence[FrontierPoint]) -> list[FrontierPoint]:
    """The points sorted by currency, latency and cost, with `on_frontier` set (in place) per currency.

    A point is on the frontier when no other point of its currency dominates it: is no slower and no dearer, and
    strictly faster or cheaper. Equal points do not dominate each other, so both stay on the frontier."""
    ordered = sorted(points, key=lambda p: (p.currency, p.latency, p.cost_per_million, p.endpoint))
    out: list[FrontierPoint] = []
    best: tuple[str, float, Decimal] | None = None  # (currency, latency, cost) of the last frontier point
    for point in ordered:
        if best is None or best[0] != point.currency:
            on = True
        else:
            # Sorted by latency then cost: every earlier point is at least as fast, so only a lower cost escapes
            # domination, or the very same (latency, cost) as the last frontier point (a tie).
            on = point.cost_per_million < best[2] or (point.latency, point.cost_per_million) == best[1:]
        if on:
            best = (point.currency, point.latency, point.cost_per_million)
        point.on_frontier = on
        out.append(point)
    return out


def frontier_points(rows: Iterable[Mapping[str, Any]]) -> tuple[list[FrontierPoint], list[str]]:
    """Summary rows (see dashboards.models.EndpointSummary, as values with endpoint/team/model names) -> plottable
    points with the frontier marked, and notes on the endpoints left out and why."""
    points: list[FrontierPoint] = []
    no_tokens: list[str] = []
    no_latency: list[str] = []
    no_price: list[str] = []
    mixed: list[str] = []
    for row in rows:
        label = f"{row['team_slug']}/{row['endpoint_name']}"
        tokens = row["prompt_tokens"] + row["generation_tokens"]
        if not tokens:
            no_tokens.append(label)
        elif row["p95_e2e"] is None:
            no_latency.append(label)
        elif row["mixed_currency"]:
            mixed.append(label)
        elif not row["currency"] or row["cost_per_million"] is None:
            no_price.append(label)
        else:
            points.append(
                FrontierPoint(
                    endpoint_id=row["endpoint_id"],
                    endpoint=label,
                    team=row["team_name"],
                    model=row["model_name"],
                    score=row["quality_score"],
                    latency=row["p95_e2e"],
                    cost_per_million=row["cost_per_million"],
                    currency=row["currency"],
                    tokens=tokens,
                    requests=row["requests"],
                )
            )
    notes = [
        _note(
            no_tokens,
            "served no tokens in this window, so it has no cost per token",
            "served no tokens in this window, so they have no cost per token",
        ),
        _note(no_latency, "has no end-to-end latency recorded", "have no end-to-end latency recorded"),
        _note(no_price, "has no GPU price, so no cost", "have no GPU price, so no cost"),
        _note(mixed, "was billed in two currencies in this window", "were billed in two currencies in this window"),
    ]
    return mark_frontier(points), [n for n in notes if n]


def _note(labels: list[str], one: str, many: str) -> str:
    if not labels:
        return ""
    shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
    if len(labels) == 1:
        return f"Left out: {shown} {one}."
    return f"Left out: {len(labels)} endpoints ({shown}) {many}."


def _size(score: Decimal | None) -> float:
    if score is None:
        return NO_SCORE_SIZE
    return round(MIN_SIZE + (MAX_SIZE - MIN_SIZE) * min(max(float(score), 0.0), 100.0) / 100, 2)


# Hover text from per-point customdata and one template per trace: a 2,000-point figure stays small.
HOVER = (
    "<b>%{customdata[0]}</b><br>Team: %{customdata[1]}<br>Model: %{customdata[2]}<br>Quality score: %{customdata[3]}"
    "<br>p95 end-to-end: %{x:.3f} s<br>Cost per 1M tokens: %{y:,.4f} CURRENCY%{customdata[4]}<extra></extra>"
)


def _scatter(points: list[FrontierPoint], name: str, colour: str, symbol: str, currency: str) -> dict[str, Any]:
    names: dict[str, str] = {}  # each team and model name escaped once (plotly reads hover text as HTML)

    def safe(text: str) -> str:
        if text not in names:
            names[text] = escape(text, quote=False)
        return names[text]

    return {
        "type": "scatter",
        "mode": "markers",
        "name": name,
        "x": [round(p.latency, 4) for p in points],
        "y": [round(float(p.cost_per_million), 6) for p in points],
        "customdata": [
            [
                safe(p.endpoint),
                safe(p.team),
                safe(p.model),
                p.score_label,
                "<br>On the frontier" if p.on_frontier else "",
            ]
            for p in points
        ],
        "hovertemplate": HOVER.replace("CURRENCY", escape(currency)),
        "marker": {
            "size": [_size(p.score) for p in points],
            "color": colour,
            "symbol": symbol,
            "opacity": 0.8,
            "line": {"width": 1, "color": "#ffffff"},
        },
    }


COLUMNS = (
    "Endpoint",
    "Team",
    "Model",
    "Quality score",
    "p95 end-to-end latency (s)",
    "Cost per 1M tokens",
    "Currency",
    "Tokens",
    "Requests",
    "On the frontier",
)


def frontier_chart(points: Sequence[FrontierPoint], *, window_label: str) -> Chart:
    """`points` as `frontier_points` returns them (frontier marked)."""
    currencies = sorted({p.currency for p in points})
    several = len(currencies) > 1
    data: list[dict[str, Any]] = []
    for index, currency in enumerate(currencies):
        mine = [p for p in points if p.currency == currency]
        suffix = f" ({currency})" if several else ""
        scored = [p for p in mine if p.score is not None]
        unscored = [p for p in mine if p.score is None]
        colour = PALETTE[(2 * index) % len(PALETTE)]
        if scored:
            data.append(_scatter(scored, f"Endpoints, sized by quality score{suffix}", colour, "circle", currency))
        if unscored:
            data.append(
                _scatter(unscored, f"No quality score{suffix}", PALETTE[(2 * index + 1) % 8], "diamond", currency)
            )
        front = [p for p in mine if p.on_frontier]
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"Frontier{suffix}",
                "x": [round(p.latency, 4) for p in front],
                "y": [round(float(p.cost_per_million), 6) for p in front],
                "line": {"color": PALETTE[3] if not several else colour, "width": 2, "dash": "dash"},
                "hoverinfo": "skip",
            }
        )
    unit = currencies[0] if len(currencies) == 1 else "per currency"
    layout = base_layout(
        height=420,
        hovermode="closest",
        xaxis={"title": {"text": "p95 end-to-end latency (s)"}, "rangemode": "tozero"},
        yaxis={"title": {"text": f"Cost per 1M tokens ({unit})"}},
    )
    # Decimals as their text (what the CSV shows anyway): the page caches this chart, and plain strings unpickle
    # several times faster than 4,000 Decimals.
    rows: list[Sequence[Any]] = [
        [
            p.endpoint,
            p.team,
            p.model,
            "" if p.score is None else str(p.score),
            round(p.latency, 4),
            str(p.cost_per_million),
            p.currency,
            p.tokens,
            p.requests,
            "yes" if p.on_frontier else "no",
        ]
        for p in points
    ]
    return Chart(
        key="frontier",
        title=f"Cost against latency, last {window_label}",
        data=data,
        layout=layout,
        columns=COLUMNS,
        rows=rows,
        empty_message=f"No traffic yet in this window: none of your endpoints served tokens in the last "
        f"{window_label}.",
        empty_hint="Send a few requests to an endpoint (Try it, on its page); it appears here after the next summary "
        "refresh. A longer window may already have traffic.",
        description="Each point is an endpoint: further left is faster, lower is cheaper, bigger scores higher on "
        "quality; the dashed line joins the endpoints that no other endpoint beats on both cost and latency.",
    )
