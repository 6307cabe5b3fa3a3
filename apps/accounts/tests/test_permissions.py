"""The permission table, person by person: every Access check, the row scoping, and the page and API guards."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.test import RequestFactory

from apps.accounts.models import User
from apps.accounts.permissions import (
    ANONYMOUS,
    AdminOnly,
    AdminWritesOthersRead,
    CanViewAudit,
    access_for,
    can_view_audit,
    forget_access,
    is_admin,
    require,
    signed_in,
)
from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.teams.models import Budget, GpuQuota, Membership, Team
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory

PEOPLE = ["anonymous", "no_role", "member", "lead", "other_lead", "finance", "admin", "inactive", "superuser"]


@pytest.fixture
def people(team_a, team_b, member_user, lead_user, other_lead, finance_user, admin_user) -> dict[str, object]:
    inactive = UserFactory(username="gone", is_platform_admin=True, is_finance=True, is_active=False)
    MembershipFactory(user=inactive, team=team_a, role=Membership.Role.LEAD)
    return {
        "anonymous": AnonymousUser(),
        "no_role": UserFactory(username="nobody"),
        "member": member_user,
        "lead": lead_user,
        "other_lead": other_lead,
        "finance": finance_user,
        "admin": admin_user,
        "inactive": inactive,
        # A Django superuser without Pareto's admin flag is treated as an admin.
        "superuser": UserFactory(username="root", is_superuser=True, is_staff=True),
    }


# Columns: authenticated, sees_all_teams, is_lead, has_any_role, can_view_team(A), can_view_team(B),
# can_manage_members(A), can_manage_members(B), can_edit_budget, can_view_audit, can_view_team_audit(A),
# can_view_team_audit(B), can_administer.
T, F = True, False
TABLE = {
    "anonymous": (F, F, F, F, F, F, F, F, F, F, F, F, F),
    "no_role": (T, F, F, F, F, F, F, F, F, F, F, F, F),
    "member": (T, F, F, T, T, F, F, F, F, F, F, F, F),
    "lead": (T, F, T, T, T, F, T, F, F, T, T, F, F),
    "other_lead": (T, F, T, T, F, T, F, T, F, T, F, T, F),
    "finance": (T, T, F, T, T, T, F, F, T, T, T, T, F),
    "admin": (T, T, F, T, T, T, T, T, T, T, T, T, T),
    "inactive": (F, F, F, F, F, F, F, F, F, F, F, F, F),
    "superuser": (T, T, F, T, T, T, T, T, T, T, T, T, T),
}


@pytest.mark.parametrize("person", PEOPLE)
def test_every_access_check_follows_the_role_table(people, team_a, team_b, person):
    access = access_for(people[person])
    a, b = team_a.pk, team_b.pk
    observed = (
        access.authenticated,
        access.sees_all_teams,
        access.is_lead,
        access.has_any_role,
        access.can_view_team(a),
        access.can_view_team(b),
        access.can_manage_members(a),
        access.can_manage_members(b),
        access.can_edit_budget(),
        access.can_view_audit(),
        access.can_view_team_audit(a),
        access.can_view_team_audit(b),
        access.can_administer(),
    )
    assert observed == TABLE[person]


@pytest.mark.parametrize("person", ["anonymous", "inactive"])
def test_anonymous_and_inactive_people_get_the_anonymous_access(people, person):
    assert access_for(people[person]) == ANONYMOUS
    assert access_for(None) == ANONYMOUS


VISIBLE_TEAMS = {
    "anonymous": set(),
    "no_role": set(),
    "member": {"team-a"},
    "lead": {"team-a"},
    "other_lead": {"team-b"},
    "finance": {"team-a", "team-b"},
    "admin": {"team-a", "team-b"},
    "inactive": set(),
    "superuser": {"team-a", "team-b"},
}


@pytest.mark.parametrize("person", PEOPLE)
def test_scope_returns_only_rows_of_teams_the_person_may_see(people, team_a, team_b, person):
    for team in (team_a, team_b):
        GpuQuotaFactory(team=team)
        GpuQuotaFactory(team=team)
        BudgetFactory(team=team)
    access = access_for(people[person])

    quota_teams = [q.team.slug for q in access.scope(GpuQuota.objects.select_related("team"))]
    assert set(quota_teams) == VISIBLE_TEAMS[person]
    assert len(quota_teams) == 2 * len(VISIBLE_TEAMS[person])
    assert {b.team.slug for b in access.scope(Budget.objects.select_related("team"))} == VISIBLE_TEAMS[person]
    assert {t.slug for t in access.scope(Team.objects.all(), field_name="id")} == VISIBLE_TEAMS[person]
    assert {
        m.team.slug for m in access.scope(Membership.objects.select_related("team"), field_name="team__id")
    } <= VISIBLE_TEAMS[person]


VISIBLE_AUDIT = {
    "anonymous": set(),
    "no_role": set(),
    "member": set(),
    "lead": {"team-a"},
    "other_lead": {"team-b"},
    "finance": {"team-a", "team-b", "platform"},
    "admin": {"team-a", "team-b", "platform"},
    "inactive": set(),
    "superuser": {"team-a", "team-b", "platform"},
}


@pytest.mark.parametrize("person", PEOPLE)
def test_scope_audit_returns_only_events_the_person_may_read(people, team_a, team_b, person):
    system = Actor.system()
    audit_record(actor=system, action="test.a", target=team_a, team=team_a, after={"label": "team-a"})
    audit_record(actor=system, action="test.b", target=team_b, team=team_b, after={"label": "team-b"})
    audit_record(actor=system, action="test.platform", target=team_a, team=None, after={"label": "platform"})
    access = access_for(people[person])

    seen = {e.after["label"] for e in access.scope_audit(AuditEvent.objects.filter(action__startswith="test."))}
    assert seen == VISIBLE_AUDIT[person]


def test_access_is_computed_with_one_query_and_cached_on_the_user(lead_user, team_a, django_assert_num_queries):
    user = User.objects.get(pk=lead_user.pk)
    with django_assert_num_queries(1):
        first = access_for(user)
        assert access_for(user) is first

    MembershipFactory(user=user, team__slug="team-new")
    assert access_for(user) is first  # cached for the request
    forget_access(user)
    assert len(access_for(user).member_team_ids) == 2


# --- page and API guards -------------------------------------------------------------------------
def _view(request, *args, **kwargs) -> HttpResponse:
    return HttpResponse("ok")


PAGE_CHECKS = {"signed_in": signed_in, "is_admin": is_admin, "can_view_audit": can_view_audit}
PAGE_ALLOWED = {
    "signed_in": {"no_role", "member", "lead", "other_lead", "finance", "admin", "superuser"},
    "is_admin": {"admin", "superuser"},
    "can_view_audit": {"lead", "other_lead", "finance", "admin", "superuser"},
}


@pytest.mark.parametrize("check", list(PAGE_CHECKS))
@pytest.mark.parametrize("person", PEOPLE)
def test_require_redirects_anonymous_refuses_the_wrong_role_and_lets_the_right_one_in(people, person, check):
    request = RequestFactory().get("/somewhere/?x=1")
    request.user = people[person]
    guarded = require(PAGE_CHECKS[check])(_view)

    if not request.user.is_authenticated:
        response = guarded(request)
        assert response.status_code == 302
        assert "next=/somewhere/%3Fx%3D1" in response["Location"]
    elif person in PAGE_ALLOWED[check]:
        assert guarded(request).content == b"ok"
    else:
        with pytest.raises(PermissionDenied):
            guarded(request)


API_ALLOWED = {
    ("AdminWritesOthersRead", "GET"): {"no_role", "member", "lead", "other_lead", "finance", "admin", "superuser"},
    ("AdminWritesOthersRead", "POST"): {"admin", "superuser"},
    ("AdminWritesOthersRead", "DELETE"): {"admin", "superuser"},
    ("AdminOnly", "GET"): {"admin", "superuser"},
    ("CanViewAudit", "GET"): {"lead", "other_lead", "finance", "admin", "superuser"},
}
API_CLASSES = {"AdminWritesOthersRead": AdminWritesOthersRead, "AdminOnly": AdminOnly, "CanViewAudit": CanViewAudit}


@pytest.mark.parametrize(("permission", "method"), list(API_ALLOWED))
@pytest.mark.parametrize("person", PEOPLE)
def test_api_permission_classes_follow_the_role_table(people, person, permission, method):
    request = RequestFactory().generic(method, "/api/v1/x/")
    request.user = people[person]
    allowed = API_CLASSES[permission]().has_permission(request, view=None)
    assert allowed == (person in API_ALLOWED[(permission, method)])
