from __future__ import annotations

import pytest
from django.urls import reverse

from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.teams.models import Membership, Team
from apps.teams.tests.factories import MembershipFactory, TeamFactory

pytestmark = pytest.mark.django_db


TEAMS = reverse("api:teams-list")
MEMBERSHIPS = reverse("api:memberships-list")
# session, user, memberships (roles), count, page, session save (3)
LIST_QUERIES = 8


def team_url(team: Team) -> str:
    return reverse("api:teams-detail", args=[team.slug])


def membership_url(membership: Membership) -> str:
    return reverse("api:memberships-detail", args=[membership.pk])


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["slug"] for row in response.json()["results"]]


# --- teams ----------------------------------------------------------------------------------------
def test_anonymous_gets_401(client_for, team_a):
    assert client_for(None).get(TEAMS).status_code == 401
    assert client_for(None).get(team_url(team_a)).status_code == 401


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("member_user", ["team-a"]),
        ("lead_user", ["team-a"]),
        ("other_lead", ["team-b"]),
        ("finance_user", ["team-a", "team-b"]),
        ("admin_user", ["team-a", "team-b"]),
    ],
)
def test_team_list_is_scoped_by_role(request, client_for, team_a, team_b, role, expected):
    assert slugs(client_for(request.getfixturevalue(role)).get(TEAMS)) == expected


def test_another_teams_detail_is_404_not_403(client_for, lead_user, team_b):
    client = client_for(lead_user)
    assert client.get(team_url(team_b)).status_code == 404
    assert client.get(team_url(TeamFactory(slug="team-c"))).status_code == 404


def test_admin_creates_a_team_with_an_audit_event(client_for, admin_user):
    response = client_for(admin_user).post(
        TEAMS, {"slug": "search", "name": "Search", "cost_center": "CC-7"}, content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    team = Team.objects.get(slug="search")
    assert response.json()["name"] == "Search"
    event = AuditEvent.objects.get(action="team.create")
    assert event.actor == admin_user and event.team_id == team.pk


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_write_teams(request, client_for, team_a, role):
    client = client_for(request.getfixturevalue(role))
    assert client.post(TEAMS, {"slug": "new", "name": "New"}, content_type="application/json").status_code == 403
    assert client.patch(team_url(team_a), {"name": "Hacked"}, content_type="application/json").status_code == 403
    assert client.delete(team_url(team_a)).status_code == 403
    team_a.refresh_from_db()
    assert team_a.name == "Team A"
    assert set(Team.objects.values_list("slug", flat=True)) == {"team-a"}


@pytest.mark.parametrize(
    ("slug", "name"),
    [("Bad_Slug!", "Bad"), ("-leading-dash", "Bad"), ("x" * 41, "Too long"), ("team-a", "Taken"), ("ok", "")],
)
def test_bad_team_input_names_the_field_and_creates_nothing(client_for, admin_user, team_a, slug, name):
    response = client_for(admin_user).post(TEAMS, {"slug": slug, "name": name}, content_type="application/json")
    assert response.status_code == 400
    assert ("name" if not name else "slug") in response.json()
    assert list(Team.objects.values_list("slug", flat=True)) == ["team-a"]
    assert not AuditEvent.objects.exists()


def test_admin_updates_name_but_never_the_slug(client_for, admin_user, team_a):
    response = client_for(admin_user).patch(
        team_url(team_a), {"name": "Alpha", "slug": "renamed"}, content_type="application/json"
    )
    assert response.status_code == 200
    team_a.refresh_from_db()
    assert (team_a.slug, team_a.name) == ("team-a", "Alpha")
    event = AuditEvent.objects.get(action="team.update")
    assert event.after == {"name": "Alpha"}


def test_admin_deletes_a_team_with_an_audit_event(client_for, admin_user, team_a):
    assert client_for(admin_user).delete(team_url(team_a)).status_code == 204
    assert not Team.objects.exists()
    assert AuditEvent.objects.filter(action="team.delete", target_id=str(team_a.pk)).exists()


def test_team_list_query_count_is_constant(client_for, finance_user, django_assert_max_num_queries):
    TeamFactory.create_batch(12)
    client = client_for(finance_user)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(TEAMS)
    assert response.json()["count"] == 12


# --- memberships ----------------------------------------------------------------------------------
@pytest.fixture
def b_member(team_b: Team) -> Membership:
    return MembershipFactory(team=team_b, user=UserFactory(username="member-b"))


def members(response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.content
    return [(row["team"], row["user"]) for row in response.json()["results"]]


def test_memberships_are_visible_to_the_teams_members_only(client_for, member_user, lead_user, b_member):
    client = client_for(member_user)
    assert members(client.get(MEMBERSHIPS)) == [("team-a", "lead-a"), ("team-a", "member-a")]
    assert members(client.get(MEMBERSHIPS, {"team": "team-b"})) == []
    assert client.get(membership_url(b_member)).status_code == 404


@pytest.mark.parametrize("role", ["finance_user", "admin_user"])
def test_admin_and_finance_see_every_teams_members(request, client_for, lead_user, b_member, role):
    client = client_for(request.getfixturevalue(role))
    assert members(client.get(MEMBERSHIPS, {"team": "team-b"})) == [("team-b", "member-b")]
    assert len(members(client.get(MEMBERSHIPS))) == 2


def test_lead_adds_a_member_to_their_team_with_an_audit_event(client_for, lead_user, team_a):
    UserFactory(username="newbie")
    response = client_for(lead_user).post(
        MEMBERSHIPS, {"team": "team-a", "user": "newbie", "role": "member"}, content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["source"] == "manual"
    membership = Membership.objects.get(team=team_a, user__username="newbie")
    event = AuditEvent.objects.get(action="membership.add")
    assert event.actor == lead_user and event.team_id == team_a.pk and event.target_id == str(membership.pk)


def test_lead_of_team_a_cannot_touch_team_b(client_for, lead_user, team_b, b_member):
    UserFactory(username="newbie")
    client = client_for(lead_user)
    added = client.post(MEMBERSHIPS, {"team": "team-b", "user": "newbie"}, content_type="application/json")
    assert added.status_code == 403
    changed = client.patch(membership_url(b_member), {"role": "lead"}, content_type="application/json")
    assert changed.status_code == 404
    assert client.delete(membership_url(b_member)).status_code == 404
    b_member.refresh_from_db()
    assert b_member.role == "member"
    assert list(Membership.objects.filter(team=team_b).values_list("user__username", flat=True)) == ["member-b"]
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("role", ["member_user", "finance_user"])
def test_members_and_finance_cannot_manage_members(request, client_for, lead_user, role):
    UserFactory(username="newbie")
    client = client_for(request.getfixturevalue(role))
    lead_membership = Membership.objects.get(user=lead_user)
    assert (
        client.post(MEMBERSHIPS, {"team": "team-a", "user": "newbie"}, content_type="application/json").status_code
        == 403
    )
    assert (
        client.patch(membership_url(lead_membership), {"role": "member"}, content_type="application/json").status_code
        == 403
    )
    assert client.delete(membership_url(lead_membership)).status_code == 403
    lead_membership.refresh_from_db()
    assert lead_membership.role == "lead"
    assert not Membership.objects.filter(user__username="newbie").exists()


def test_lead_changes_a_role_and_removes_a_member(client_for, lead_user, member_user, team_a):
    membership = Membership.objects.get(user=member_user)
    client = client_for(lead_user)
    response = client.patch(membership_url(membership), {"role": "lead"}, content_type="application/json")
    assert response.status_code == 200
    membership.refresh_from_db()
    assert membership.role == "lead"
    assert AuditEvent.objects.get(action="membership.update").after == {"role": "lead"}
    assert client.delete(membership_url(membership)).status_code == 204
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.filter(action="membership.remove", team_id=team_a.pk).exists()


def test_admin_changes_role_in_any_team(client_for, admin_user, b_member):
    response = client_for(admin_user).patch(membership_url(b_member), {"role": "lead"}, content_type="application/json")
    assert response.status_code == 200
    b_member.refresh_from_db()
    assert b_member.role == "lead"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"team": "team-a", "user": "member-a"}, "user"),  # already in the team
        ({"team": "team-a", "user": "nobody"}, "user"),
        ({"team": "team-a", "user": "newbie", "role": "boss"}, "role"),
    ],
)
def test_bad_membership_input_names_the_field(client_for, lead_user, member_user, data, field):
    UserFactory(username="newbie")
    before = set(Membership.objects.values_list("pk", "role"))
    response = client_for(lead_user).post(MEMBERSHIPS, data, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert set(Membership.objects.values_list("pk", "role")) == before
    assert not AuditEvent.objects.exists()


def test_bad_role_change_changes_nothing(client_for, lead_user, member_user):
    membership = Membership.objects.get(user=member_user)
    response = client_for(lead_user).patch(
        membership_url(membership), {"role": "owner"}, content_type="application/json"
    )
    assert response.status_code == 400 and "role" in response.json()
    membership.refresh_from_db()
    assert membership.role == "member"


def test_membership_list_query_count_is_constant(client_for, admin_user, team_a, django_assert_max_num_queries):
    MembershipFactory.create_batch(12, team=team_a)
    client = client_for(admin_user)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(MEMBERSHIPS)
    assert response.json()["count"] == 12
