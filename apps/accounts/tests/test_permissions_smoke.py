from __future__ import annotations

from apps.accounts.permissions import access_for


def test_lead_sees_own_team_only(lead_user, team_a, team_b):
    access = access_for(lead_user)
    assert access.can_view_team(team_a.pk)
    assert not access.can_view_team(team_b.pk)
    assert access.can_manage_members(team_a.pk)
    assert not access.can_manage_members(team_b.pk)


def test_finance_sees_all_teams_but_does_not_administer(finance_user, team_a, team_b):
    access = access_for(finance_user)
    assert access.can_view_team(team_a.pk) and access.can_view_team(team_b.pk)
    assert not access.can_administer()
    assert access.can_edit_budget()
