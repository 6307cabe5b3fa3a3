"""Cluster capacity per GPU type: installed, reserved and free (the admin dashboard)."""

from __future__ import annotations

from collections.abc import Sequence

from apps.core.charts import PALETTE, Chart, base_layout

from .selectors import Capacity


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
