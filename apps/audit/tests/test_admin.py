"""Audit events in the Django admin: visible to platform admins, never added, changed or deleted."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.core.tests.adminform import superuser
from apps.teams.tests.factories import TeamFactory


@pytest.fixture
def root(db):
    return superuser()


@pytest.fixture
def event(db) -> AuditEvent:
    team = TeamFactory(slug="ops")
    return audit_record(
        actor=Actor.system(),
        action="team.update",
        target=team,
        team=team,
        before={"name": "Ops"},
        after={"name": "Operations"},
    )


def snapshot_of(event: AuditEvent) -> dict:
    return AuditEvent.objects.filter(pk=event.pk).values().get()


def test_admin_lists_and_shows_events(client_for, root, event):
    client = client_for(root)
    listing = client.get(reverse("admin:audit_auditevent_changelist"))
    assert listing.status_code == 200 and "team.update" in listing.content.decode()
    detail = client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "Operations" in html
    assert 'name="action"' not in html  # shown, not editable
    assert 'name="_save"' not in html  # no save button


def test_model_admin_grants_no_add_change_or_delete(rf: RequestFactory, root, event):
    model_admin = admin.site._registry[AuditEvent]
    request = rf.get("/")
    request.user = root
    assert model_admin.has_view_permission(request, event)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert "delete_selected" not in model_admin.get_actions(request)


def test_add_is_refused(client_for, root, event):
    client = client_for(root)
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    response = client.post(
        reverse("admin:audit_auditevent_add"), {"action": "forged", "actor_label": "x", "target_type": "x"}
    )
    assert response.status_code == 403
    assert AuditEvent.objects.count() == 1


def test_change_is_refused_and_changes_nothing(client_for, root, event):
    before = snapshot_of(event)
    response = client_for(root).post(
        reverse("admin:audit_auditevent_change", args=[event.pk]),
        {"action": "team.delete", "actor_label": "someone-else", "target_type": "teams.team", "_save": "Save"},
    )
    assert response.status_code == 403
    assert snapshot_of(event) == before


def test_delete_is_refused_and_deletes_nothing(client_for, root, event):
    client = client_for(root)
    url = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"post": "yes"}).status_code == 403
    bulk = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_non_staff_platform_admin_and_finance_cannot_open_it(client_for, admin_user, finance_user, event):
    for user in (admin_user, finance_user):
        response = client_for(user).get(reverse("admin:audit_auditevent_changelist"))
        assert response.status_code == 302
        assert reverse("admin:login") in response["Location"]
