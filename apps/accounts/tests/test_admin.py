"""Users, groups and API tokens in the Django admin: changes audited, no password hash in any event."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from apps.accounts.models import ApiToken, User
from apps.accounts.services import api_token_create
from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.core.tests.adminform import submit, superuser

NEW_PASSWORD = "a-long-and-unusual-passphrase-42"


@pytest.fixture
def root(db):
    return superuser()


def all_event_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("before", "after")))


def test_granting_a_platform_role_is_audited_without_the_password_hash(client_for, root):
    user = UserFactory(username="dana")
    response = submit(
        client_for(root),
        reverse("admin:accounts_user_change", args=[user.pk]),
        is_platform_admin="on",
        identity_issuer="tenant-1",
        identity_subject="oid-1",
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_platform_admin
    event = AuditEvent.objects.get(action="user.admin_update", target_id=str(user.pk))
    assert event.before == {"is_platform_admin": False, "identity_issuer": "", "identity_subject": ""}
    assert event.after == {"is_platform_admin": True, "identity_issuer": "tenant-1", "identity_subject": "oid-1"}
    assert user.password not in all_event_text()


def test_group_and_permission_changes_on_a_user_are_audited(client_for, root):
    user = UserFactory(username="erin", is_staff=True)
    group = Group.objects.create(name="catalog-editors")
    perm = Permission.objects.get(codename="change_catalogmodel")
    response = submit(
        client_for(root),
        reverse("admin:accounts_user_change", args=[user.pk]),
        groups=[str(group.pk)],
        user_permissions=[str(perm.pk)],
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user.admin_update", target_id=str(user.pk))
    assert event.before == {"groups": [], "user_permissions": []}
    assert event.after == {"groups": [group.pk], "user_permissions": [perm.pk]}


def test_adding_a_user_in_the_admin_is_audited_without_the_password(client_for, root):
    response = client_for(root).post(
        reverse("admin:accounts_user_add"),
        {
            "username": "frank",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "usable_password": "true",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(username="frank")
    event = AuditEvent.objects.get(action="user.admin_create")
    assert event.target_id == str(user.pk) and event.after["username"] == "frank"
    assert "password" not in event.after
    assert user.password not in all_event_text()


def test_a_password_change_in_the_admin_is_audited_without_the_hash(client_for, root):
    user = UserFactory(username="gil")
    response = client_for(root).post(
        reverse("admin:auth_user_password_change", args=[user.pk]),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    event = AuditEvent.objects.get(action="user.admin_password_change")
    assert (event.target_id, event.actor_id, event.before, event.after) == (str(user.pk), root.pk, None, None)


def test_a_refused_password_change_writes_nothing(client_for, root):
    user = UserFactory(username="hal")
    before = AuditEvent.objects.count()
    response = client_for(root).post(
        reverse("admin:auth_user_password_change", args=[user.pk]), {"password1": "x", "password2": "y"}
    )
    assert response.status_code == 200
    assert AuditEvent.objects.count() == before


def test_api_tokens_are_read_only_and_show_no_editable_hash(client_for, root):
    owner = UserFactory(username="ivy")
    token, raw = api_token_create(actor=Actor.system(), user=owner, name="ci")
    client = client_for(root)
    assert client.get(reverse("admin:accounts_apitoken_add")).status_code == 403
    page = client.get(reverse("admin:accounts_apitoken_change", args=[token.pk])).content.decode()
    assert token.key_hash in page  # visible for matching against logs
    assert 'name="key_hash"' not in page and raw not in page
    response = client.post(
        reverse("admin:accounts_apitoken_change", args=[token.pk]),
        {"key_hash": "0" * 64, "name": "renamed", "_save": "Save"},
    )
    assert response.status_code == 403
    token.refresh_from_db()
    assert (token.name, token.key_hash) != ("renamed", "0" * 64)


def test_revoking_tokens_from_the_admin_goes_through_the_service(client_for, root):
    owner = UserFactory(username="jo")
    token, _ = api_token_create(actor=Actor.system(), user=owner, name="laptop")
    response = client_for(root).post(
        reverse("admin:accounts_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    event = AuditEvent.objects.get(action="api_token.revoke")
    assert (event.target_id, event.actor_id) == (str(token.pk), root.pk)


def test_deleting_a_token_in_the_admin_is_audited(client_for, root):
    token, _ = api_token_create(actor=Actor.system(), user=UserFactory(username="kim"), name="old")
    response = client_for(root).post(reverse("admin:accounts_apitoken_delete", args=[token.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    event = AuditEvent.objects.get(action="api_token.admin_delete")
    assert event.before["name"] == "old"


def test_group_changes_are_audited(client_for, root):
    response = submit(client_for(root), reverse("admin:auth_group_add"), name="auditors")
    assert response.status_code == 302
    assert AuditEvent.objects.get(action="group.admin_create").after["name"] == "auditors"
