"""Audit events can be written, never changed or removed: not through the ORM, not through raw SQL."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.teams.services import team_delete


@pytest.fixture
def event(admin_user, team_a) -> AuditEvent:
    return audit_record(
        actor=Actor(user=admin_user, source_ip="192.0.2.1"),
        action="team.update",
        target=team_a,
        team=team_a,
        before={"name": "Old"},
        after={"name": "Team A"},
    )


def assert_untouched(event: AuditEvent) -> None:
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.actor_label, stored.before, stored.after) == (
        "team.update",
        "admin",
        {"name": "Old"},
        {"name": "Team A"},
    )


def test_audit_record_writes_who_what_where_and_when(event, admin_user, team_a):
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.actor_id, stored.actor_label, stored.source_ip) == (admin_user.pk, "admin", "192.0.2.1")
    assert (stored.target_type, stored.target_id, stored.target_label) == ("teams.team", str(team_a.pk), "Team A")
    assert stored.team_id == team_a.pk
    assert stored.created_at is not None


def test_saving_an_existing_event_raises(event):
    event.action = "team.delete"
    with pytest.raises(PermissionError):
        event.save()
    assert_untouched(event)


def test_deleting_an_event_raises(event):
    with pytest.raises(PermissionError):
        event.delete()
    assert_untouched(event)


def test_queryset_update_raises(event):
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    assert_untouched(event)


def test_queryset_delete_raises(event):
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert_untouched(event)


def test_bulk_update_raises(event):
    event.after = {"name": "Forged"}
    with pytest.raises(PermissionError), transaction.atomic():  # bulk_update marks the transaction for rollback
        AuditEvent.objects.bulk_update([event], ["after"])
    assert_untouched(event)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_auditevent SET action = 'forged' WHERE id = %s",
        "UPDATE audit_auditevent SET after = NULL WHERE id = %s",
        "DELETE FROM audit_auditevent WHERE id = %s",
    ],
)
def test_raw_sql_update_and_delete_are_refused_by_the_database(event, sql):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [event.pk])
    assert_untouched(event)


def test_raw_sql_insert_still_works(event):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (actor_label, action, target_type, target_id, target_label, created_at)"
            " VALUES ('system', 'test.insert', 'x', '', '', now())"
        )
    assert AuditEvent.objects.filter(action="test.insert").count() == 1


def test_deleting_the_team_and_the_actor_leaves_their_events(event, admin_user, team_a):
    team_pk, admin_pk = team_a.pk, admin_user.pk
    team_delete(actor=Actor(user=admin_user), team=team_a)
    admin_user.delete()

    assert_untouched(event)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.team_id, stored.actor_id) == (team_pk, admin_pk)
    assert AuditEvent.objects.filter(action="team.delete", actor_label="admin").exists()
