"""Reads for the single sign-on pages."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import GroupTeamMapping


def group_mappings() -> QuerySet[GroupTeamMapping]:
    """Every group -> team mapping with its team, in one query."""
    return GroupTeamMapping.objects.select_related("team").order_by("team__slug", "group_id", "pk")
