from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.inventory.services import gpu_type_create
from apps.teams.models import Team
from apps.teams.services import team_update
from apps.teams.tests.factories import TeamFactory

pytestmark = pytest.mark.django_db

EVENTS = reverse("api:audit-events-list")


@pytest.fixture
def events(admin_user, lead_user, other_lead, team_a: Team, team_b: Team) -> dict[str, AuditEvent]:
    """Real events, written by the services: one per team and one platform-wide, oldest first."""
    team_update(actor=Actor(user=admin_user, source_ip="127.0.0.1"), team=team_a, name="Alpha")
    team_update(actor=Actor(user=other_lead), team=team_b, name="Bravo")
    gpu_type_create(actor=Actor(user=admin_user), sku="H100-80GB", memory_gib=80)
    return {
        "a": AuditEvent.objects.get(team=team_a),
        "b": AuditEvent.objects.get(team=team_b),
        "platform": AuditEvent.objects.get(action="gpu_type.create"),
    }


def labels(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["target_label"] for row in response.json()["results"]]


def test_anonymous_gets_401(client_for, events):
    assert client_for(None).get(EVENTS).status_code == 401


def test_members_cannot_read_audit(client_for, member_user, events):
    client = client_for(member_user)
    assert client.get(EVENTS).status_code == 403
    assert client.get(reverse("api:audit-events-detail", args=[events["a"].pk])).status_code == 403


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("lead_user", ["Alpha"]),
        ("other_lead", ["Bravo"]),
        ("finance_user", ["H100-80GB", "Bravo", "Alpha"]),
        ("admin_user", ["H100-80GB", "Bravo", "Alpha"]),
    ],
)
def test_audit_is_scoped_and_newest_first(request, client_for, events, role, expected):
    assert labels(client_for(request.getfixturevalue(role)).get(EVENTS)) == expected


def test_an_event_of_another_team_is_404_for_a_lead(client_for, lead_user, events):
    client = client_for(lead_user)
    assert client.get(reverse("api:audit-events-detail", args=[events["b"].pk])).status_code == 404
    assert client.get(reverse("api:audit-events-detail", args=[events["platform"].pk])).status_code == 404
    body = client.get(reverse("api:audit-events-detail", args=[events["a"].pk])).json()
    assert (body["actor"], body["action"], body["team"], body["source_ip"]) == (
        "admin",
        "team.update",
        "team-a",
        "127.0.0.1",
    )
    assert (body["before"], body["after"]) == ({"name": "Team A"}, {"name": "Alpha"})


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"action": "team.update"}, ["Bravo", "Alpha"]),
        ({"team": "team-b"}, ["Bravo"]),
        ({"target_type": "inventory.gputype"}, ["H100-80GB"]),
        ({"actor": "lead-b"}, ["Bravo"]),
        ({"actor": "admin", "action": "team.update"}, ["Alpha"]),
        ({"team": "no-such-team"}, []),
    ],
)
def test_filters(client_for, finance_user, events, params, expected):
    assert labels(client_for(finance_user).get(EVENTS, params)) == expected


def test_the_audit_api_is_read_only(client_for, admin_user, events):
    client = client_for(admin_user)
    detail = reverse("api:audit-events-detail", args=[events["a"].pk])
    assert client.post(EVENTS, {"action": "x"}, content_type="application/json").status_code == 405
    assert client.delete(detail).status_code == 405
    assert AuditEvent.objects.count() == 3


def test_deleted_teams_events_still_list(client_for, admin_user, events, team_b):
    team_b.delete()  # the audit row keeps its team id without a constraint
    assert labels(client_for(admin_user).get(EVENTS))[:2] == ["H100-80GB", "Bravo"]


def test_list_query_count_is_constant(client_for, finance_user, django_assert_max_num_queries):
    for team in TeamFactory.create_batch(12):
        team_update(actor=Actor(user=finance_user), team=team, name=f"Renamed {team.slug}")
    client = client_for(finance_user)
    # session, user, memberships (roles), count, page, session save (3)
    with django_assert_max_num_queries(8):
        response = client.get(EVENTS)
    assert response.json()["count"] == 12
