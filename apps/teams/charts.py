"""GPU quota use per team and GPU type against the limits (the admin dashboard)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Sum
from django.db.models.functions import Coalesce

from apps.core.charts import PALETTE, Chart, base_layout
from apps.endpoints.models import Endpoint
from apps.endpoints.selectors import RESERVATION
from apps.inventory.models import GpuType

from .models import GpuQuota, Team

TOP = 15  # teams drawn: the closest to their limits; the table and CSV have every row


@dataclass(frozen=True)
class QuotaUse:
    team_slug: str
    team_name: str
    gpu_type: str
    limit: int
    reserved: int

    @property
    def percent(self) -> float | None:
        """Reserved as a share of the limit; None for GPUs reserved with no quota at all (shown first)."""
        if not self.limit:
            return None if self.reserved else 0.0
        return self.reserved / self.limit * 100

    @property
    def label(self) -> str:
        return f"{self.team_slug} · {self.gpu_type}"

    def sort_key(self) -> tuple[float, int, str, str]:
        percent = self.percent
        return (-(percent if percent is not None else float("inf")), -self.reserved, self.team_slug, self.gpu_type)


def reserved_by_team_and_type() -> dict[tuple[int, int], int]:
    """GPUs held per (team id, GPU type id), counted as the endpoint services count them
    (`endpoints.selectors.team_reservations`): GPUs per replica x max replicas of each endpoint in a reserving state.
    One query, ids only; the admin dashboard shares it between quota use and cluster capacity."""
    rows = (
        Endpoint.objects.filter(state__in=Endpoint.RESERVING)
        .values_list("team_id", "gpu_type_id")
        .annotate(total=Coalesce(Sum(RESERVATION), 0))
        .order_by()
    )
    return {(team_id, gpu_type_id): int(total) for team_id, gpu_type_id, total in rows}


def quota_use(reserved: Mapping[tuple[int, int], int] | None = None) -> list[QuotaUse]:
    """Every (team, GPU type) with a quota or a reservation, closest to (or over) the limit first.

    One query (quotas with their names), plus `reserved_by_team_and_type` unless given, plus (only when a team
    holds GPUs of a type it has no quota for) the names of those teams and types. (A read for teams/selectors.py
    next to the per-team version; it lives here until that file can take it.)"""
    if reserved is None:
        reserved = reserved_by_team_and_type()
    limits: dict[tuple[int, int], tuple[int, str, str]] = {}
    skus: dict[int, str] = {}
    for team_id, gpu_type_id, limit, slug, name, sku in GpuQuota.objects.values_list(
        "team_id", "gpu_type_id", "limit", "team__slug", "team__name", "gpu_type__sku"
    ):
        limits[(team_id, gpu_type_id)] = (limit, slug, name)
        skus[gpu_type_id] = sku
    # GPUs held with no quota at all: names from two more small queries, only when there are any.
    missing = reserved.keys() - limits.keys()
    teams = {
        pk: (slug, name)
        for pk, slug, name in Team.objects.filter(pk__in={t for t, _ in missing}).values_list("pk", "slug", "name")
    }
    skus |= dict(GpuType.objects.filter(pk__in={g for _, g in missing} - skus.keys()).values_list("pk", "sku"))
    rows = []
    for key in limits.keys() | reserved.keys():
        team_id, gpu_type_id = key
        limit, slug, name = limits[key] if key in limits else (0, *teams[team_id])
        rows.append(
            QuotaUse(
                team_slug=slug,
                team_name=name,
                gpu_type=skus[gpu_type_id],
                limit=limit,
                reserved=reserved.get(key, 0),
            )
        )
    return sorted(rows, key=QuotaUse.sort_key)


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
