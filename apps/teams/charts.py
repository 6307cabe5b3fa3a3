"""GPU quota use per team and GPU type against the limits (the admin dashboard)."""

from __future__ import annotations

from collections.abc import Sequence

from apps.core.charts import PALETTE, Chart, base_layout

from .selectors import QuotaUse

TOP = 15  # teams drawn: the closest to their limits; the table and CSV have every row


def _percent_cell(use: QuotaUse) -> str:
    percent = use.percent
    return "no quota" if percent is None else f"{percent:.1f}"


def quota_use_chart(rows: Sequence[QuotaUse], *, top: int = TOP) -> Chart:
    """Horizontal bars, reserved against limit, for the `top` rows closest to their limits (rows as `quota_use`
    sorts them); the table behind it has every row."""
    drawn = list(reversed(rows[:top]))  # plotly draws the first category at the bottom
    labels = [use.label for use in drawn]
    hover = [f"{use.team_name} ({use.team_slug}), {use.gpu_type}: {_percent_cell(use)}%" for use in drawn]
    data = [
        {
            "type": "bar",
            "orientation": "h",
            "name": "Reserved",
            "y": labels,
            "x": [use.reserved for use in drawn],
            "text": hover,
            "hovertemplate": "%{text}<br>Reserved: %{x} GPUs<extra></extra>",
            "marker": {"color": PALETTE[0]},
        },
        {
            "type": "bar",
            "orientation": "h",
            "name": "Limit",
            "y": labels,
            "x": [use.limit for use in drawn],
            "hovertemplate": "Limit: %{x} GPUs<extra></extra>",
            "marker": {"color": PALETTE[5], "pattern": {"shape": "/"}},
        },
    ]
    layout = base_layout(
        barmode="group",
        height=max(300, 40 + 34 * len(drawn)),
        hovermode="closest",
        margin={"l": 16},
        xaxis={"title": {"text": "GPUs"}, "rangemode": "tozero"},
        yaxis={"automargin": True, "type": "category"},
    )
    over = sum(1 for use in rows if use.percent is None or use.percent > 100)
    shown = f"the {len(drawn)} closest to their limits" if len(rows) > top else "every team and GPU type"
    return Chart(
        key="quota_use",
        title="GPU quota use",
        data=data,
        layout=layout,
        columns=("Team", "Team name", "GPU type", "Reserved GPUs", "Limit", "Use %"),
        rows=[
            [use.team_slug, use.team_name, use.gpu_type, use.reserved, use.limit, _percent_cell(use)] for use in rows
        ],
        empty_message="No team has a GPU quota or a reservation yet.",
        empty_hint="Give teams quotas on their pages; reservations appear as endpoints are approved.",
        description=f"GPUs reserved by endpoints against each team's limit per GPU type: {shown}"
        + (f"; {over} over their limit." if over else "."),
    )
