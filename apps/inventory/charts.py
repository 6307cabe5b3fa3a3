"""Cluster capacity per GPU type: installed, reserved and free (the admin dashboard)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.db.models import Sum

from apps.core.charts import PALETTE, Chart, base_layout

from .models import ClusterGpuInventory, GpuType


@dataclass(frozen=True)
class Capacity:
    gpu_type: str
    total: int
    reserved: int

    @property
    def free(self) -> int:
        return max(self.total - self.reserved, 0)

    @property
    def over(self) -> int:
        """Reserved beyond what the clusters have (a shrunk inventory)."""
        return max(self.reserved - self.total, 0)


def capacity_by_gpu_type(reserved: Mapping[tuple[int, int], int] | None = None) -> list[Capacity]:
    """Per GPU type: GPUs in every cluster's inventory, GPUs reserved by endpoints (`reserved`: per (team id, GPU
    type id), as `teams.charts.reserved_by_team_and_type` counts them), free. One query, plus that one unless given.
    (A read for inventory/selectors.py; it lives here until that file can take it.)"""
    if reserved is None:
        from apps.teams.charts import reserved_by_team_and_type

        reserved = reserved_by_team_and_type()
    totals: dict[int, int] = {}
    skus: dict[int, str] = {}
    for gpu_type_id, sku, total in (
        ClusterGpuInventory.objects.values_list("gpu_type_id", "gpu_type__sku").annotate(total=Sum("count")).order_by()
    ):
        totals[gpu_type_id], skus[gpu_type_id] = int(total or 0), sku
    by_type: dict[int, int] = {}
    for (_, gpu_type_id), gpus in reserved.items():
        by_type[gpu_type_id] = by_type.get(gpu_type_id, 0) + gpus
    # Types reserved but in no inventory: their names in one more query, only when there are any.
    skus |= dict(GpuType.objects.filter(pk__in=by_type.keys() - skus.keys()).values_list("pk", "sku"))
    return sorted(
        (
            Capacity(gpu_type=skus[pk], total=totals.get(pk, 0), reserved=by_type.get(pk, 0))
            for pk in totals.keys() | by_type.keys()
        ),
        key=lambda row: row.gpu_type,
    )


def capacity_chart(rows: Sequence[Capacity]) -> Chart:
    skus = [row.gpu_type for row in rows]
    data = [
        {
            "type": "bar",
            "name": "Reserved",
            "x": skus,
            "y": [min(row.reserved, row.total) for row in rows],
            "hovertemplate": "%{x}: %{y} reserved<extra></extra>",
            "marker": {"color": PALETTE[0]},
        },
        {
            "type": "bar",
            "name": "Free",
            "x": skus,
            "y": [row.free for row in rows],
            "hovertemplate": "%{x}: %{y} free<extra></extra>",
            "marker": {"color": PALETTE[2], "pattern": {"shape": "."}},
        },
    ]
    if any(row.over for row in rows):
        data.append(
            {
                "type": "bar",
                "name": "Reserved beyond capacity",
                "x": skus,
                "y": [row.over for row in rows],
                "hovertemplate": "%{x}: %{y} reserved beyond capacity<extra></extra>",
                "marker": {"color": PALETTE[3], "pattern": {"shape": "x"}},
            }
        )
    return Chart(
        key="capacity",
        title="Cluster capacity per GPU type",
        data=data,
        layout=base_layout(
            barmode="stack",
            hovermode="closest",
            xaxis={"type": "category"},
            yaxis={"title": {"text": "GPUs"}},
        ),
        columns=("GPU type", "Total GPUs", "Reserved", "Free", "Reserved beyond capacity"),
        rows=[[row.gpu_type, row.total, row.reserved, row.free, row.over] for row in rows],
        empty_message="No cluster lists any GPUs yet.",
        empty_hint="Add each cluster's GPU inventory on its page.",
        description="GPUs in all clusters' inventories per type, split into reserved by endpoints and free; "
        "each bar's height is the installed total.",
    )
