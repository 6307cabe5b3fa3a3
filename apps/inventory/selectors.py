"""Reads of GPU types, prices and clusters shared by pages and the API."""

from __future__ import annotations

from datetime import datetime

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import timezone

from .models import Cluster, GpuPrice, GpuType


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
