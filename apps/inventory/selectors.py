"""Reads of GPU types, prices and clusters shared by pages and the API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from .models import Cluster, ClusterGpuInventory, GpuPrice, GpuType


def gpu_price_at(*, gpu_type: GpuType, at: datetime) -> GpuPrice | None:
    """The price in force at a moment: the latest one that started at or before it."""
    return GpuPrice.objects.filter(gpu_type=gpu_type, effective_from__lte=at).order_by("-effective_from").first()


def gpu_types_with_current_price(*, at: datetime | None = None) -> QuerySet[GpuType]:
    """GPU types annotated with `current_price`, `current_currency`, `current_is_example` in one query."""
    moment = at or timezone.now()
    current = GpuPrice.objects.filter(gpu_type=OuterRef("pk"), effective_from__lte=moment).order_by("-effective_from")
    return GpuType.objects.annotate(
        current_price=Subquery(current.values("hourly_price")[:1]),
        current_currency=Subquery(current.values("currency")[:1]),
        current_is_example=Subquery(current.values("is_example")[:1]),
    ).order_by("sku")


def clusters_with_inventory() -> QuerySet[Cluster]:
    return Cluster.objects.prefetch_related("inventory__gpu_type").order_by("name")


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
    type id), as `endpoints.selectors.reserved_by_team_and_type` counts them), free. One query, plus that one unless
    given."""
    if reserved is None:
        from apps.endpoints.selectors import reserved_by_team_and_type  # endpoints' selectors import these

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
