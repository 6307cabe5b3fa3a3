"""User and API token services: audited changes, hashed tokens, and what makes a token stop working."""

from __future__ import annotations

import datetime as dt
import hashlib
from contextlib import AbstractContextManager

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import RequestFactory
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.request import Request

from apps.accounts import services
from apps.accounts.authentication import ApiTokenAuthentication
from apps.accounts.models import ApiToken, User
from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.audit.tests import checks
from apps.audit.tests.checks import no_event

IP = "192.0.2.10"
STRONG = "violet-anchor-29-maple"


@pytest.fixture
def actor(admin_user) -> Actor:
    return Actor(user=admin_user, source_ip=IP)


def last_event(action: str, actor: Actor, target_type: str, target_id: int) -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert event.action == action
    assert (event.actor_id, event.actor_label, event.source_ip) == (actor.user.pk, actor.label, actor.source_ip)
    assert event.team_id is None
    assert (event.target_type, event.target_id) == (target_type, str(target_id))
    return event


def refused(field: str) -> AbstractContextManager[pytest.ExceptionInfo[ValidationError]]:
    return checks.refused(field, User, ApiToken)


# --- local users ---------------------------------------------------------------------------------
def test_user_create_local_audits_without_the_password(actor):
    user = services.user_create_local(
        actor=actor, username="carol", password=STRONG, email="carol@example.test", is_finance=True
    )

    stored = User.objects.get(username="carol")
    assert stored.check_password(STRONG)
    assert STRONG not in stored.password
    event = last_event("user.create", actor, "accounts.user", user.pk)
    assert event.after == {
        "username": "carol",
        "email": "carol@example.test",
        "is_platform_admin": False,
        "is_finance": True,
    }
    assert STRONG not in str(event.after)


@pytest.mark.parametrize("password", ["short", "password123", "12345678901", "carol123"])
def test_user_create_local_refuses_a_weak_password(actor, password):
    with refused("password"):
        services.user_create_local(actor=actor, username="carol", password=password)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"username": "admin"}, "username"),  # taken by the actor
        ({"username": "bad name!"}, "username"),
        ({"username": ""}, "username"),
        ({"username": "carol", "email": "not-an-email"}, "email"),
    ],
)
def test_user_create_local_refuses_bad_fields(actor, fields, field):
    with refused(field):
        services.user_create_local(actor=actor, password=STRONG, **fields)


def test_user_set_roles_audits_before_and_after(actor):
    user = UserFactory(username="dave")
    services.user_set_roles(actor=actor, user=user, is_finance=True, is_platform_admin=False)

    assert User.objects.get(pk=user.pk).is_finance
    event = last_event("user.roles", actor, "accounts.user", user.pk)
    assert (event.before, event.after) == ({"is_finance": False}, {"is_finance": True})


def test_user_set_roles_deactivates_a_user(actor):
    user = UserFactory(username="dave")
    services.user_set_roles(actor=actor, user=user, is_active=False)

    assert not User.objects.get(pk=user.pk).is_active
    event = last_event("user.roles", actor, "accounts.user", user.pk)
    assert (event.before, event.after) == ({"is_active": True}, {"is_active": False})


def test_user_set_roles_to_the_same_roles_writes_no_event(actor):
    user = UserFactory(username="dave", is_finance=True)
    with no_event():
        services.user_set_roles(actor=actor, user=user, is_finance=True, is_active=True)


@pytest.mark.parametrize("field", ["is_superuser", "is_staff", "username", "password"])
def test_user_set_roles_refuses_anything_but_the_platform_roles(actor, field):
    user = UserFactory(username="dave")
    with refused(field):
        services.user_set_roles(actor=actor, user=user, **{field: True})
    stored = User.objects.get(pk=user.pk)
    assert (stored.is_superuser, stored.is_staff, stored.username) == (False, False, "dave")


def test_user_set_roles_refuses_a_value_that_is_not_a_boolean(actor):
    user = UserFactory(username="dave")
    with refused("is_finance"):
        services.user_set_roles(actor=actor, user=user, is_finance="maybe")
    assert not User.objects.get(pk=user.pk).is_finance


# --- API tokens ----------------------------------------------------------------------------------
def test_api_token_create_stores_only_the_hash(actor, member_user):
    token, raw = services.api_token_create(actor=actor, user=member_user, name="  nightly export  ")

    assert raw.startswith("pareto_") and len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.name == "nightly export"
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(stored.hint) and len(stored.hint) < len(raw)
    # Nowhere in the token table, nor in the audit trail, is the raw token.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apitoken")
        token_rows = repr(cursor.fetchall())
        cursor.execute("SELECT before::text, after::text, target_label FROM audit_auditevent")
        audit_rows = repr(cursor.fetchall())
    assert raw not in token_rows
    assert raw not in audit_rows
    assert raw[len(stored.hint) :] not in token_rows + audit_rows


def test_api_token_create_audits_the_token(actor, member_user):
    expires = timezone.now() + dt.timedelta(days=30)
    token, _ = services.api_token_create(actor=actor, user=member_user, name="ci", expires_at=expires)

    event = last_event("api_token.create", actor, "accounts.apitoken", token.pk)
    assert event.after == {
        "user": member_user.pk,
        "name": "ci",
        "hint": token.hint,
        "expires_at": expires.isoformat(),
    }


@pytest.mark.parametrize(
    ("name", "expires_in", "field"),
    [
        ("", None, "name"),
        ("   ", None, "name"),
        ("x" * 101, None, "name"),
        ("ci", dt.timedelta(seconds=-1), "expires_at"),
        ("ci", dt.timedelta(0), "expires_at"),
    ],
)
def test_api_token_create_refuses_bad_input(actor, member_user, name, expires_in, field):
    expires_at = timezone.now() + expires_in if expires_in is not None else None
    with refused(field):
        services.api_token_create(actor=actor, user=member_user, name=name, expires_at=expires_at)


def test_api_token_create_refuses_an_expiry_that_is_not_a_moment(actor, member_user):
    with refused("expires_at"):
        services.api_token_create(actor=actor, user=member_user, name="ci", expires_at="tomorrow")


def test_api_token_authenticate_returns_the_user_and_records_the_use(member_user):
    token, raw = services.api_token_create(actor=Actor(user=member_user), user=member_user, name="ci")
    assert token.last_used_at is None

    before = timezone.now()
    assert services.api_token_authenticate(raw) == member_user

    used = ApiToken.objects.get(pk=token.pk).last_used_at
    assert used is not None and before <= used <= timezone.now()


def test_api_token_authenticate_updates_last_use_at_most_once_a_minute(member_user):
    token, raw = services.api_token_create(actor=Actor(user=member_user), user=member_user, name="ci")
    recent = timezone.now() - dt.timedelta(seconds=30)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=recent)

    assert services.api_token_authenticate(raw) == member_user
    assert ApiToken.objects.get(pk=token.pk).last_used_at == recent

    stale = timezone.now() - dt.timedelta(minutes=5)
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    assert services.api_token_authenticate(raw) == member_user
    assert ApiToken.objects.get(pk=token.pk).last_used_at > stale


def test_api_token_authenticate_refuses_a_revoked_token(actor, member_user):
    token, raw = services.api_token_create(actor=actor, user=member_user, name="ci")
    services.api_token_revoke(actor=actor, token=token)

    assert services.api_token_authenticate(raw) is None
    assert ApiToken.objects.get(pk=token.pk).last_used_at is None


def test_api_token_authenticate_refuses_an_expired_token(actor, member_user):
    token, raw = services.api_token_create(
        actor=actor, user=member_user, name="ci", expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))

    assert services.api_token_authenticate(raw) is None


def test_api_token_authenticate_refuses_an_inactive_user(actor, member_user):
    _, raw = services.api_token_create(actor=actor, user=member_user, name="ci")
    services.user_set_roles(actor=actor, user=member_user, is_active=False)

    assert services.api_token_authenticate(raw) is None


def test_api_token_authenticate_refuses_an_unknown_or_altered_token(actor, member_user):
    _, raw = services.api_token_create(actor=actor, user=member_user, name="ci")

    assert services.api_token_authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert services.api_token_authenticate("pareto_" + "x" * 43) is None
    assert services.api_token_authenticate("") is None


def test_bearer_authentication_uses_the_token(actor, member_user):
    token, raw = services.api_token_create(actor=actor, user=member_user, name="ci")
    auth = ApiTokenAuthentication()

    good = Request(RequestFactory().get("/api/v1/", HTTP_AUTHORIZATION=f"Bearer {raw}"))
    assert auth.authenticate(good) == (member_user, None)

    services.api_token_revoke(actor=actor, token=token)
    with pytest.raises(exceptions.AuthenticationFailed):
        auth.authenticate(Request(RequestFactory().get("/api/v1/", HTTP_AUTHORIZATION=f"Bearer {raw}")))


def test_api_token_revoke_audits_once(actor, member_user):
    token, _ = services.api_token_create(actor=actor, user=member_user, name="ci")
    revoked = services.api_token_revoke(actor=actor, token=token)

    assert revoked.revoked_at is not None
    assert ApiToken.objects.get(pk=token.pk).revoked_at == revoked.revoked_at
    event = last_event("api_token.revoke", actor, "accounts.apitoken", token.pk)
    assert (event.before, event.after) == ({"revoked_at": None}, {"revoked_at": revoked.revoked_at.isoformat()})

    with no_event():
        again = services.api_token_revoke(actor=actor, token=ApiToken.objects.get(pk=token.pk))
    assert again.revoked_at == revoked.revoked_at


def test_api_token_revoke_of_a_stale_copy_writes_no_second_event(actor, member_user):
    token, _ = services.api_token_create(actor=actor, user=member_user, name="ci")
    stale_copy = ApiToken.objects.get(pk=token.pk)
    services.api_token_revoke(actor=actor, token=token)

    with no_event():
        services.api_token_revoke(actor=actor, token=stale_copy)
    assert AuditEvent.objects.filter(action="api_token.revoke").count() == 1
