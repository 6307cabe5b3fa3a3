"""Teams, memberships, quotas and budgets in the Django admin: audited and scoped to the team."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.core.tests.adminform import submit, superuser
from apps.teams.models import Budget, Membership
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory


@pytest.fixture
def root(db):
    return superuser()


def test_team_change_is_audited_and_scoped_to_the_team(client_for, root, team_a):
    response = submit(client_for(root), reverse("admin:teams_team_change", args=[team_a.pk]), cost_center="CC-9")
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="team.admin_update")
    assert (event.team_id, event.after) == (team_a.pk, {"cost_center": "CC-9"})


def test_membership_role_change_is_audited_for_the_teams_leads(client_for, root, team_a, member_user):
    membership = Membership.objects.get(user=member_user, team=team_a)
    url = reverse("admin:teams_membership_change", args=[membership.pk])
    assert submit(client_for(root), url, role="lead").status_code == 302
    event = AuditEvent.objects.get(action="membership.admin_update")
    assert (event.team_id, event.before, event.after) == (team_a.pk, {"role": "member"}, {"role": "lead"})


def test_quota_change_uses_the_quota_action_prefix(client_for, root, team_a):
    quota = GpuQuotaFactory(team=team_a, limit=8)
    assert (
        submit(client_for(root), reverse("admin:teams_gpuquota_change", args=[quota.pk]), limit="16").status_code == 302
    )
    event = AuditEvent.objects.get(action="quota.admin_update")
    assert (event.team_id, event.before, event.after) == (team_a.pk, {"limit": 8}, {"limit": 16})


def test_budget_change_and_delete_are_audited(client_for, root, team_a):
    budget = BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"))
    client = client_for(root)
    url = reverse("admin:teams_budget_change", args=[budget.pk])
    assert submit(client, url, monthly_amount="2500.00").status_code == 302
    update = AuditEvent.objects.get(action="budget.admin_update")
    assert (update.before, update.after) == ({"monthly_amount": "1000.00"}, {"monthly_amount": "2500.00"})
    response = client.post(reverse("admin:teams_budget_delete", args=[budget.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Budget.objects.exists()
    delete = AuditEvent.objects.get(action="budget.admin_delete")
    assert (delete.team_id, delete.before["monthly_amount"]) == (team_a.pk, "2500.00")


def test_bad_input_in_the_admin_changes_nothing(client_for, root, team_a):
    budget = BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"))
    before = AuditEvent.objects.count()
    response = submit(client_for(root), reverse("admin:teams_budget_change", args=[budget.pk]), monthly_amount="-5")
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["monthly_amount"]
    budget.refresh_from_db()
    assert budget.monthly_amount == Decimal("1000.00")
    assert AuditEvent.objects.count() == before


def test_adding_a_membership_is_audited(client_for, root, team_b):
    user = MembershipFactory().user
    response = submit(
        client_for(root),
        reverse("admin:teams_membership_add"),
        user=str(user.pk),
        team=str(team_b.pk),
        role="member",
        source="manual",
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="membership.admin_create")
    assert (event.team_id, event.after["user_id"]) == (team_b.pk, user.pk)
