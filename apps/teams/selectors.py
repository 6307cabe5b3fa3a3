"""Reads of teams, memberships, quotas and budgets that pages and the API share.

Every function takes the reader's `Access`, so a selector can never return another team's rows by mistake.
"""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from apps.accounts.permissions import Access

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
