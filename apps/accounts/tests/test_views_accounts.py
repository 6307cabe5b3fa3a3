"""Sign-in, sign-out and the personal API tokens page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from apps.accounts import views
from apps.accounts.models import ApiToken, hash_token
from apps.accounts.services import api_token_authenticate, api_token_create
from apps.accounts.tests.factories import PASSWORD, UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor

LOGIN = reverse("accounts:login")
TOKENS = reverse("accounts:tokens")


def token_state() -> tuple:
    return (
        list(ApiToken.objects.order_by("pk").values_list("pk", "user_id", "name", "revoked_at")),
        AuditEvent.objects.count(),
    )


# --- sign in / out -----------------------------------------------------------------------------------------
def test_login_page_offers_local_accounts_and_no_sso_yet(client_for, db):
    response = client_for(None).get(LOGIN)
    assert response.status_code == 200
    assert b"Local accounts" in response.content
    assert b"Sign in with Microsoft" not in response.content


def test_login_page_has_a_place_for_the_sso_button(rf: RequestFactory, db):
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore

    request = rf.get(LOGIN)
    request.user = AnonymousUser()
    request.session = SessionStore()
    response = views.LoginView.as_view(extra_context={"sso_login_url": "/sso/start/"})(request)
    response.render()
    assert b'href="/sso/start/"' in response.content
    assert b"Sign in with Microsoft" in response.content


def test_local_login_then_logout(client_for, member_user):
    client = client_for(None)
    response = client.post(LOGIN, {"username": "member-a", "password": PASSWORD, "next": "/teams/"})
    assert response.status_code == 302 and response["Location"] == "/teams/"
    assert client.get("/").status_code == 200
    assert client.get(reverse("accounts:logout")).status_code == 405  # sign-out is a POST only
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert client.get("/").status_code == 302


def test_wrong_password_shows_an_error_and_signs_nobody_in(client_for, member_user):
    client = client_for(None)
    response = client.post(LOGIN, {"username": "member-a", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert client.get("/").status_code == 302


def test_signed_in_person_skips_the_login_page(client_for, member_user):
    response = client_for(member_user).get(LOGIN)
    assert response.status_code == 302


# --- tokens ----------------------------------------------------------------------------------------------
def test_tokens_page_needs_sign_in(client_for, db):
    response = client_for(None).get(TOKENS)
    assert response.status_code == 302 and response["Location"].startswith(LOGIN)


@pytest.mark.parametrize("role", ["member_user", "lead_user", "other_lead", "finance_user", "admin_user"])
def test_everyone_sees_only_their_own_tokens(request, client_for, role):
    user = request.getfixturevalue(role)
    stranger = UserFactory(username="stranger")
    api_token_create(actor=Actor(user=user), user=user, name="my script")
    api_token_create(actor=Actor(user=stranger), user=stranger, name="stranger-job")
    response = client_for(user).get(TOKENS)
    assert response.status_code == 200
    assert [t.name for t in response.context["tokens"]] == ["my script"]
    assert b"stranger-job" not in response.content


def test_no_tokens_shows_the_empty_state(client_for, member_user):
    assert b"You have no API tokens yet." in client_for(member_user).get(TOKENS).content


def test_create_shows_the_raw_token_once(client_for, member_user):
    client = client_for(member_user)
    response = client.post(TOKENS, {"name": "nightly report", "expires_at": ""})
    assert response.status_code == 200
    raw = response.context["raw_token"]
    assert raw.startswith("pareto_")
    assert raw.encode() in response.content
    assert b"shown only this once" in response.content
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=member_user)
    assert (token.name, token.key_hash, token.expires_at) == ("nightly report", hash_token(raw), None)
    assert api_token_authenticate(raw) == member_user
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_id, event.target_id) == ("api_token.create", member_user.pk, str(token.pk))
    # Never again: the list shows only the hint.
    again = client.get(TOKENS)
    assert raw.encode() not in again.content
    assert token.hint.encode() in again.content


def test_create_with_an_expiry_date(client_for, member_user):
    day = timezone.localdate() + dt.timedelta(days=30)
    client_for(member_user).post(TOKENS, {"name": "month", "expires_at": day.isoformat()})
    token = ApiToken.objects.get(user=member_user)
    assert timezone.localtime(token.expires_at).date() == day


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "", "expires_at": ""}, "name", "Give the token a name"),
        ({"name": "   ", "expires_at": ""}, "name", "Give the token a name"),
        ({"name": "old", "expires_at": "2001-01-01"}, "expires_at", "must be in the future"),
        ({"name": "bad", "expires_at": "soon"}, "expires_at", "Enter a valid date."),
    ],
)
def test_bad_token_input_is_shown_next_to_the_field_and_creates_nothing(client_for, member_user, data, field, message):
    before = token_state()
    response = client_for(member_user).post(TOKENS, data)
    assert response.status_code == 200
    assert response.context["raw_token"] == ""
    errors = response.context["form"].errors[field]
    assert any(message in e for e in errors), errors
    assert f'id="id_{field}_error"'.encode() in response.content
    assert token_state() == before


def test_revoke_asks_first_then_revokes(client_for, member_user):
    token, raw = api_token_create(actor=Actor(user=member_user), user=member_user, name="ci")
    client = client_for(member_user)
    url = reverse("accounts:token_revoke", args=[token.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200 and b"Revoke the token" in confirm.content
    token.refresh_from_db()
    assert token.revoked_at is None
    response = client.post(url)
    assert response.status_code == 302 and response["Location"] == TOKENS
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api_token_authenticate(raw) is None
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.target_id) == ("api_token.revoke", str(token.pk))
    assert b">revoked<" in client.get(TOKENS).content


def test_someone_elses_token_cannot_be_revoked_or_seen(client_for, member_user, admin_user):
    token, raw = api_token_create(actor=Actor(user=admin_user), user=admin_user, name="admin job")
    before = token_state()
    client = client_for(member_user)
    url = reverse("accounts:token_revoke", args=[token.pk])
    assert client.get(url).status_code == 404
    assert client.post(url).status_code == 404
    assert token_state() == before
    assert api_token_authenticate(raw) == admin_user


def test_token_states_are_labelled(client_for, member_user):
    actor = Actor(user=member_user)
    api_token_create(actor=actor, user=member_user, name="live")
    expired, _ = api_token_create(
        actor=actor, user=member_user, name="old", expires_at=timezone.now() + dt.timedelta(seconds=1)
    )
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - dt.timedelta(days=1))
    html = client_for(member_user).get(TOKENS).content.decode()
    assert '<span class="badge ok">active</span>' in html
    assert '<span class="badge warn">expired</span>' in html


@pytest.mark.parametrize("rows", [3, 10])
def test_tokens_list_query_count_does_not_grow(client_for, member_user, django_assert_max_num_queries, rows):
    for i in range(rows):
        api_token_create(actor=Actor(user=member_user), user=member_user, name=f"token {i}")
    other = UserFactory()
    api_token_create(actor=Actor(user=other), user=other, name="not mine")
    client = client_for(member_user)
    with django_assert_max_num_queries(7):
        response = client.get(TOKENS)
    assert len(response.context["tokens"]) == rows
