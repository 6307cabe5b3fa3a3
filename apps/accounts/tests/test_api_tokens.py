from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_create
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.teams.tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

TOKENS = reverse("api:tokens-list")
ME = reverse("api:me")


def bearer(raw: str) -> Client:
    """A client with no session: only the token identifies it."""
    return Client(headers={"authorization": f"Bearer {raw}"})


def test_token_auth_end_to_end(client_for, lead_user):
    session = client_for(lead_user)
    created = session.post(TOKENS, {"name": "ci script"}, content_type="application/json")
    assert created.status_code == 201, created.json()
    raw = created.json()["token"]
    token_id = created.json()["id"]
    assert raw.startswith("pareto_") and created.json()["hint"] == raw[:12]

    # The list never shows the token again, and neither does the database.
    listed = session.get(TOKENS)
    assert raw.encode() not in listed.content and "token" not in listed.json()["results"][0]
    assert not ApiToken.objects.filter(key_hash=raw).exists()

    api = bearer(raw)
    me = api.get(ME)
    assert me.status_code == 200 and me.json()["username"] == "lead-a"
    assert api.get(reverse("api:teams-list")).json()["results"][0]["slug"] == "team-a"

    revoked = api.post(reverse("api:tokens-revoke", args=[token_id]))
    assert revoked.status_code == 200 and revoked.json()["is_active"] is False
    after = bearer(raw).get(ME)
    assert after.status_code == 401
    assert after.headers["WWW-Authenticate"] == "Bearer"
    assert [e.action for e in AuditEvent.objects.order_by("id")] == ["api_token.create", "api_token.revoke"]


def test_create_writes_an_audit_event(client_for, member_user):
    response = client_for(member_user).post(TOKENS, {"name": "notebook"}, content_type="application/json")
    token = ApiToken.objects.get(pk=response.json()["id"])
    assert token.user == member_user
    event = AuditEvent.objects.get(action="api_token.create")
    assert event.actor == member_user and event.target_id == str(token.pk)
    assert response.json()["token"] not in str(event.after)


def test_delete_revokes_and_keeps_the_row(client_for, member_user):
    token, raw = api_token_create(actor=Actor(user=member_user), user=member_user, name="old")
    assert client_for(member_user).delete(reverse("api:tokens-detail", args=[token.pk])).status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert bearer(raw).get(ME).status_code == 401


def test_people_see_and_revoke_only_their_own_tokens(client_for, member_user, lead_user):
    theirs, raw = api_token_create(actor=Actor(user=lead_user), user=lead_user, name="lead's")
    mine, _ = api_token_create(actor=Actor(user=member_user), user=member_user, name="mine")
    client = client_for(member_user)
    assert [row["name"] for row in client.get(TOKENS).json()["results"]] == ["mine"]
    assert client.get(reverse("api:tokens-detail", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("api:tokens-revoke", args=[theirs.pk])).status_code == 404
    assert client.delete(reverse("api:tokens-detail", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.is_active
    assert bearer(raw).get(ME).status_code == 200
    assert mine.is_active


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "   "}, "name"),
        ({}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "late", "expires_at": (timezone.now() - dt.timedelta(hours=1)).isoformat()}, "expires_at"),
        ({"name": "bad date", "expires_at": "tomorrow"}, "expires_at"),
    ],
)
def test_bad_token_input_names_the_field_and_creates_nothing(client_for, member_user, data, field):
    response = client_for(member_user).post(TOKENS, data, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.exists()


def test_anonymous_and_bad_tokens_get_401(client_for, member_user):
    assert client_for(None).get(TOKENS).status_code == 401
    assert client_for(None).post(TOKENS, {"name": "x"}, content_type="application/json").status_code == 401
    assert bearer("pareto_not-a-real-token").get(ME).status_code == 401
    assert bearer("some-other-token").get(ME).status_code == 401
    assert not ApiToken.objects.exists()


def test_an_expired_token_is_refused(member_user):
    token, raw = api_token_create(
        actor=Actor(user=member_user), user=member_user, name="short", expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    assert bearer(raw).get(ME).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert bearer(raw).get(ME).status_code == 401


def test_token_list_query_count_is_constant(client_for, member_user, django_assert_max_num_queries):
    for i in range(12):
        api_token_create(actor=Actor(user=member_user), user=member_user, name=f"token {i}")
    client = client_for(member_user)
    # session, user, count, page, session save (3)
    with django_assert_max_num_queries(7):
        response = client.get(TOKENS)
    assert response.json()["count"] == 12


# --- me -------------------------------------------------------------------------------------------
def test_me_shows_roles_and_memberships(client_for, lead_user, team_b):
    MembershipFactory(user=lead_user, team=team_b)
    body = client_for(lead_user).get(ME).json()
    assert body["username"] == "lead-a"
    assert body["platform_roles"] == []
    assert [(m["team"], m["team_name"], m["role"]) for m in body["memberships"]] == [
        ("team-a", "Team A", "lead"),
        ("team-b", "Team B", "member"),
    ]


@pytest.mark.parametrize(("role", "roles"), [("admin_user", ["admin"]), ("finance_user", ["finance"])])
def test_me_shows_platform_roles(request, client_for, role, roles):
    body = client_for(request.getfixturevalue(role)).get(ME).json()
    assert (body["platform_roles"], body["memberships"]) == (roles, [])


def test_me_query_count_is_constant(client_for, member_user, django_assert_max_num_queries):
    MembershipFactory.create_batch(6, user=member_user)
    client = client_for(member_user)
    # session, user, user again, memberships with teams, session save (3)
    with django_assert_max_num_queries(7):
        response = client.get(ME)
    assert len(response.json()["memberships"]) == 7


def test_me_needs_sign_in(client_for):
    assert client_for(None).get(ME).status_code == 401
