"""Reads for the home page summaries."""

from __future__ import annotations

from dataclasses import dataclass

from apps.catalog.models import CatalogModel
from apps.inventory.models import Cluster, GpuType
from apps.teams.models import Team


@dataclass(frozen=True)
class PlatformCounts:
    teams: int
    gpu_types: int
    clusters: int
    catalog_models: int


def platform_counts() -> PlatformCounts:
    return PlatformCounts(
        teams=Team.objects.count(),
        gpu_types=GpuType.objects.count(),
        clusters=Cluster.objects.count(),
        catalog_models=CatalogModel.objects.count(),
    )
