"""Reads about endpoints, reservations and requests, shared by pages, the API and the services."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.accounts.permissions import Access
from apps.inventory.models import ClusterGpuInventory, GpuType
from apps.inventory.selectors import gpu_price_at
from apps.teams.models import GpuQuota, Team

from .models import Endpoint, Operation, QuotaRequest

HOURS_PER_MONTH = Decimal("730")  # 365 * 24 / 12, the usual cloud-pricing month
RESERVATION = F("gpus_per_replica") * F("max_replicas")


@dataclass(frozen=True)
class QuotaFit:
    gpu_type: GpuType
    needed: int
    limit: int
    reserved: int

    @property
    def free(self) -> int:
        return max(self.limit - self.reserved, 0)

    @property
    def fits(self) -> bool:
        return self.needed <= self.free

    def explain(self) -> str:
        return f"needs {self.needed} {self.gpu_type.sku}; team has {self.free} free of {self.limit}"


def reserved_gpus(*, team: Team, gpu_type: GpuType, exclude: Endpoint | None = None) -> int:
    qs = Endpoint.objects.filter(team=team, gpu_type=gpu_type, state__in=Endpoint.RESERVING)
    if exclude is not None and exclude.pk is not None:
        qs = qs.exclude(pk=exclude.pk)
    return int(qs.aggregate(total=Coalesce(Sum(RESERVATION), 0))["total"])


def quota_fit(*, team: Team, gpu_type: GpuType, needed: int, exclude: Endpoint | None = None) -> QuotaFit:
    limit = GpuQuota.objects.filter(team=team, gpu_type=gpu_type).values_list("limit", flat=True).first() or 0
    return QuotaFit(
        gpu_type=gpu_type,
        needed=needed,
        limit=limit,
        reserved=reserved_gpus(team=team, gpu_type=gpu_type, exclude=exclude),
    )


def cluster_capacity(*, cluster_id: int, gpu_type: GpuType) -> int:
    return (
        ClusterGpuInventory.objects.filter(cluster_id=cluster_id, gpu_type=gpu_type)
        .values_list("count", flat=True)
        .first()
        or 0
    )


@dataclass(frozen=True)
class CostEstimate:
    hourly: Decimal | None
    monthly: Decimal | None
    currency: str
    is_example: bool

    @property
    def known(self) -> bool:
        return self.hourly is not None


def cost_estimate(*, gpu_type: GpuType, gpus: int) -> CostEstimate:
    """Cost of holding `gpus` GPUs for an hour and a 730-hour month, at the price in force now."""
    price = gpu_price_at(gpu_type=gpu_type, at=timezone.now())
    if price is None:
        return CostEstimate(hourly=None, monthly=None, currency="", is_example=False)
    hourly = price.hourly_price * gpus
    return CostEstimate(
        hourly=hourly, monthly=hourly * HOURS_PER_MONTH, currency=price.currency, is_example=price.is_example
    )


def endpoints_visible(*, access: Access) -> QuerySet[Endpoint]:
    return access.scope(
        Endpoint.objects.select_related("team", "model", "cluster", "gpu_type", "requested_by", "approved_by")
    )


def endpoint_operations(*, endpoint: Endpoint, limit: int = 50) -> list[Operation]:
    return list(endpoint.operations.order_by("-created_at", "-id")[:limit])


def approval_queue() -> tuple[QuerySet[Endpoint], QuerySet[QuotaRequest]]:
    endpoints = (
        Endpoint.objects.filter(state=Endpoint.State.PENDING_APPROVAL)
        .select_related("team", "model", "cluster", "gpu_type", "requested_by")
        .order_by("created_at")
    )
    requests = (
        QuotaRequest.objects.filter(state=QuotaRequest.State.PENDING)
        .select_related("team", "gpu_type", "requested_by")
        .order_by("created_at")
    )
    return endpoints, requests


def team_reservations(*, team: Team) -> list[QuotaFit]:
    """Per GPU type the team has a quota for (or reserves): limit and reserved, in two queries."""
    limits = {q.gpu_type_id: q for q in GpuQuota.objects.filter(team=team).select_related("gpu_type")}
    reserved_rows = (
        Endpoint.objects.filter(team=team, state__in=Endpoint.RESERVING)
        .values("gpu_type")
        .annotate(total=Coalesce(Sum(RESERVATION), 0))
    )
    reserved = {row["gpu_type"]: row["total"] for row in reserved_rows}
    types = {q.gpu_type_id: q.gpu_type for q in limits.values()}
    missing = set(reserved) - set(types)
    if missing:
        types.update({g.pk: g for g in GpuType.objects.filter(pk__in=missing)})
    return [
        QuotaFit(
            gpu_type=types[pk], needed=0, limit=limits[pk].limit if pk in limits else 0, reserved=reserved.get(pk, 0)
        )
        for pk in sorted(types, key=lambda k: types[k].sku)
    ]


def reserved_by_team_and_type() -> dict[tuple[int, int], int]:
    """GPUs held per (team id, GPU type id), counted as `team_reservations` counts them: GPUs per replica x max
    replicas of each endpoint in a reserving state. One query, ids only; the admin dashboard shares it between quota
    use (teams.selectors.quota_use) and cluster capacity (inventory.selectors.capacity_by_gpu_type)."""
    rows = (
        Endpoint.objects.filter(state__in=Endpoint.RESERVING)
        .values_list("team_id", "gpu_type_id")
        .annotate(total=Coalesce(Sum(RESERVATION), 0))
        .order_by()
    )
    return {(team_id, gpu_type_id): int(total) for team_id, gpu_type_id, total in rows}


def pending_counts() -> dict[str, int]:
    return {
        "endpoints": Endpoint.objects.filter(state=Endpoint.State.PENDING_APPROVAL).count(),
        "quota_requests": QuotaRequest.objects.filter(state=QuotaRequest.State.PENDING).count(),
    }


def live(qs: QuerySet[Endpoint]) -> QuerySet[Endpoint]:
    return qs.exclude(Q(state__in=Endpoint.FINAL))
