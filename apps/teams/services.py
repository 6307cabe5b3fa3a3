"""Writes for teams, memberships, GPU quotas and budgets. Each writes an AuditEvent."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import User
from apps.audit.services import Actor, audit_record, snapshot
from apps.core.services import model_create, model_delete, model_update, save_validated, whole_number
from apps.inventory.models import GpuType

from .models import Budget, GpuQuota, Membership, Team

TEAM_FIELDS = ("name", "cost_center", "approval_policy")
BUDGET_FIELDS = ("monthly_amount", "currency", "alert_thresholds")


def _lock_team(team: Team) -> None:
    """Serialise writes to one team's memberships, quotas and budget.

    Without it two concurrent "add" or "set" calls both find no row and the second one's insert collides; with
    it the second waits, then sees the first one's row (a clear field error, or an update instead of a create).
    """
    Team.objects.select_for_update(no_key=True).filter(pk=team.pk).first()


def team_create(*, actor: Actor, slug: str, name: str, cost_center: str = "") -> Team:
    with transaction.atomic():
        team = Team(slug=slug, name=name, cost_center=cost_center)
        save_validated(team)
        # Scoped to the new team, so that its leads see how it was made.
        audit_record(actor=actor, action="team.create", target=team, team=team, after=snapshot(team))
    return team


def team_update(*, actor: Actor, team: Team, **changes: Any) -> Team:
    return model_update(team, actor=actor, action="team.update", data=changes, allowed=TEAM_FIELDS, team=team)


def team_delete(*, actor: Actor, team: Team) -> None:
    model_delete(team, actor=actor, action="team.delete", team=team)


def membership_add(
    *, actor: Actor, team: Team, user: User, role: str = Membership.Role.MEMBER, source: str = Membership.Source.MANUAL
) -> Membership:
    with transaction.atomic():
        _lock_team(team)
        if Membership.objects.filter(team=team, user=user).exists():
            raise ValidationError({"user": f"{user.get_username()} is already in {team.name}."})
        return model_create(
            Membership,
            actor=actor,
            action="membership.add",
            team=team,
            data={"team": team, "user": user, "role": role, "source": source},
        )


def membership_set_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    return model_update(
        membership,
        actor=actor,
        action="membership.update",
        data={"role": role},
        allowed=("role",),
        team=membership.team,
    )


def membership_remove(*, actor: Actor, membership: Membership) -> None:
    model_delete(membership, actor=actor, action="membership.remove", team=membership.team)


def quota_set(*, actor: Actor, team: Team, gpu_type: GpuType, limit: int) -> GpuQuota:
    """Create or change a team's GPU quota for a type (admin decision)."""
    limit = whole_number(limit, field="limit", message="The quota must be a whole number of GPUs, zero or more.")
    if gpu_type.pk is None or not GpuType.objects.filter(pk=gpu_type.pk).exists():
        raise ValidationError({"gpu_type": "Unknown GPU type; it may have been deleted."})
    with transaction.atomic():
        _lock_team(team)
        existing = GpuQuota.objects.select_for_update().filter(team=team, gpu_type=gpu_type).first()
        if existing is None:
            quota = model_create(
                GpuQuota,
                actor=actor,
                action="quota.create",
                team=team,
                data={"team": team, "gpu_type": gpu_type, "limit": limit},
            )
        else:
            quota = model_update(
                existing, actor=actor, action="quota.update", data={"limit": limit}, allowed=("limit",), team=team
            )
        _sync_kubernetes_quota(team)
        return quota


def quota_delete(*, actor: Actor, quota: GpuQuota) -> None:
    with transaction.atomic():
        model_delete(quota, actor=actor, action="quota.delete", team=quota.team)
        _sync_kubernetes_quota(quota.team)


def _sync_kubernetes_quota(team: Team) -> None:
    """Once committed, the team's ResourceQuota on every Kubernetes cluster follows the new quota."""
    from apps.endpoints.kube_tasks import enqueue_team_sync

    enqueue_team_sync(team)


def budget_set(
    *,
    actor: Actor,
    team: Team,
    monthly_amount: Decimal,
    currency: str | None = None,
    alert_thresholds: list[int] | None = None,
) -> Budget:
    """Create or change a team's monthly budget. A currency left out keeps the budget's own (USD when new)."""
    data: dict[str, Any] = {"monthly_amount": monthly_amount}
    if currency is not None:
        data["currency"] = currency
    if alert_thresholds is not None:
        message = "Give percentages as whole numbers from 1 to 1000, e.g. 80, 100."
        if isinstance(alert_thresholds, str | bytes) or not isinstance(alert_thresholds, Iterable):
            raise ValidationError({"alert_thresholds": message})
        data["alert_thresholds"] = sorted(
            {whole_number(v, field="alert_thresholds", message=message) for v in alert_thresholds}
        )
    with transaction.atomic():
        _lock_team(team)
        existing = Budget.objects.select_for_update().filter(team=team).first()
        if existing is None:
            return model_create(Budget, actor=actor, action="budget.create", team=team, data={"team": team, **data})
        return model_update(existing, actor=actor, action="budget.update", data=data, allowed=BUDGET_FIELDS, team=team)
