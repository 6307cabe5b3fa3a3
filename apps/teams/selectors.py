"""Reads of teams, memberships, quotas and budgets that pages and the API share.

Every function takes the reader's `Access`, so a selector can never return another team's rows by mistake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import Count, Prefetch, QuerySet

from apps.accounts.permissions import Access
from apps.endpoints.selectors import reserved_by_team_and_type
from apps.inventory.models import GpuType

from .models import GpuQuota, Membership, Team


def _with_summary(qs: QuerySet[Team]) -> QuerySet[Team]:
    """Member count, budget and quotas (with their GPU type) in two queries, however many teams."""
    return (
        qs.select_related("budget")
        .annotate(member_count=Count("memberships", distinct=True))
        .prefetch_related(
            Prefetch("quotas", queryset=GpuQuota.objects.select_related("gpu_type").order_by("gpu_type__sku"))
        )
    )


def visible_teams(*, access: Access) -> QuerySet[Team]:
    """Teams this person may see: all for admin and finance, otherwise the teams they belong to."""
    return access.scope(Team.objects.all(), field_name="id").order_by("slug")


def teams_with_summary(*, access: Access) -> QuerySet[Team]:
    return _with_summary(visible_teams(access=access))


def team_members(*, team: Team) -> QuerySet[Membership]:
    return Membership.objects.filter(team=team).select_related("user").order_by("role", "user__username")


def team_quotas(*, team: Team) -> QuerySet[GpuQuota]:
    return GpuQuota.objects.filter(team=team).select_related("gpu_type").order_by("gpu_type__sku")


def audit_teams(*, access: Access) -> QuerySet[Team]:
    """Teams whose audit events this person may read (for filters)."""
    ids = [i for i in visible_teams(access=access).values_list("id", flat=True) if access.can_view_team_audit(i)]
    return Team.objects.filter(id__in=ids).order_by("slug")


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


def quota_use(reserved: Mapping[tuple[int, int], int] | None = None) -> list[QuotaUse]:
    """Every (team, GPU type) with a quota or a reservation, closest to (or over) the limit first.

    One query (quotas with their names), plus `reserved_by_team_and_type` unless given, plus (only when a team
    holds GPUs of a type it has no quota for) the names of those teams and types."""
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
