"""The audit log page: scoped by role, filters, pagination, readable before/after."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.accounts.services import api_token_create
from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.teams import services
from apps.teams.tests.factories import TeamFactory

URL = reverse("audit:list")


@pytest.fixture
def events(admin_user, finance_user, lead_user, member_user, other_lead, team_a, team_b):
    """One change in each team by the admin, one by a lead, and one platform-wide (no team)."""
    admin = Actor(user=admin_user, source_ip="198.51.100.4")
    services.team_update(actor=admin, team=team_a, name="Team A renamed")
    services.team_update(actor=admin, team=team_b, cost_center="CC-B2")
    api_token_create(actor=admin, user=admin_user, name="platform script")
    services.team_update(actor=Actor(user=lead_user), team=team_a, cost_center="CC-A9")


def shown(response) -> list[tuple[str, str]]:
    return [(e.action, e.target_label) for e in response.context["events"]]


def test_anonymous_is_sent_to_login(client_for, db):
    response = client_for(None).get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


def test_members_get_403(client_for, member_user, events):
    response = client_for(member_user).get(URL)
    assert response.status_code == 403
    assert b"You can't do that here" in response.content


def test_a_user_without_any_role_gets_403(client_for, events):
    assert client_for(UserFactory(username="nobody")).get(URL).status_code == 403


def test_lead_sees_only_their_teams_events(client_for, lead_user, other_lead, events):
    lead = client_for(lead_user).get(URL)
    assert lead.status_code == 200
    assert shown(lead) == [("team.update", "Team A renamed"), ("team.update", "Team A renamed")]
    assert b"CC-B2" not in lead.content and b"platform script" not in lead.content
    other = client_for(other_lead).get(URL)
    assert shown(other) == [("team.update", "Team B")]


@pytest.mark.parametrize("role", ["finance_user", "admin_user"])
def test_admin_and_finance_see_every_event(request, client_for, events, role):
    response = client_for(request.getfixturevalue(role)).get(URL)
    assert response.status_code == 200
    assert len(response.context["events"]) == 4
    assert b"platform script" in response.content
    assert b"platform</span>" in response.content  # the team column of a platform-wide event


def test_before_and_after_are_shown_field_by_field(client_for, admin_user, events):
    html = " ".join(client_for(admin_user).get(URL).content.decode().split())
    # The admin's rename: name went from "Team A" to "Team A renamed".
    assert '<th scope="row">name</th> <td class="before">Team A</td> <td class="after">Team A renamed</td>' in html
    assert '<th scope="row">cost center</th>' in html
    assert "198.51.100.4" in html


def test_create_and_delete_events_show_one_side_and_readable_values(client_for, admin_user, team_a):
    actor = Actor(user=admin_user)
    team = services.team_create(actor=actor, slug="short-lived", name="Short lived")
    team_id = team.pk
    services.budget_set(actor=actor, team=team_a, monthly_amount="10.5", alert_thresholds=[80, 100])
    services.team_delete(actor=actor, team=team)
    response = client_for(admin_user).get(URL)
    by_action = {e.action: e for e in response.context["events"]}
    created = {c.field: (c.before, c.after) for c in by_action["team.create"].changes}
    assert created["slug"] == ("—", "short-lived")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", created["created at"][1])
    deleted = {c.field: (c.before, c.after) for c in by_action["team.delete"].changes}
    assert deleted["slug"] == ("short-lived", "—")
    budget = {c.field: c.after for c in by_action["budget.create"].changes}
    assert budget["alert thresholds"] == "80, 100"
    assert budget["monthly amount"] == "10.50"
    # The deleted team's events stay readable.
    assert f"deleted team #{team_id}".encode() in response.content


def test_filters_by_action_team_and_actor(client_for, admin_user, team_a, events):
    client = client_for(admin_user)
    tokens = client.get(URL, {"action": "api_token.create"}).context["events"]
    assert [e.action for e in tokens] == ["api_token.create"]
    assert {e.team_id for e in client.get(URL, {"team": team_a.pk}).context["events"]} == {team_a.pk}
    assert len(client.get(URL, {"team": team_a.pk}).context["events"]) == 2
    by_lead = client.get(URL, {"actor": "LEAD-A"}).context["events"]
    assert [(e.actor_label, e.team_id) for e in by_lead] == [("lead-a", team_a.pk)]
    combined = client.get(URL, {"team": team_a.pk, "actor": "admin", "action": "team.update"})
    assert [e.after for e in combined.context["events"]] == [{"name": "Team A renamed"}]


def test_filters_by_date_range(client_for, admin_user, events):
    client = client_for(admin_user)
    today = timezone.localdate()
    tomorrow, yesterday = today + dt.timedelta(days=1), today - dt.timedelta(days=1)
    assert len(client.get(URL, {"since": today.isoformat(), "until": today.isoformat()}).context["events"]) == 4
    assert client.get(URL, {"since": tomorrow.isoformat()}).context["events"] == []
    response = client.get(URL, {"until": yesterday.isoformat()})
    assert response.context["events"] == []
    assert b"No events match these filters." in response.content


def test_bad_filters_are_shown_next_to_the_field(client_for, lead_user, team_b, events):
    client = client_for(lead_user)
    today = timezone.localdate()
    backwards = client.get(URL, {"since": today.isoformat(), "until": (today - dt.timedelta(days=2)).isoformat()})
    assert backwards.context["form"].errors == {"until": ["The end date is before the start date."]}
    assert b'id="id_until_error"' in backwards.content
    assert backwards.context["events"] == []
    # A lead cannot even name another team in the filter.
    other_team = client.get(URL, {"team": team_b.pk})
    assert "Select a valid choice" in other_team.context["form"].errors["team"][0]
    assert other_team.context["events"] == []
    assert client.get(URL, {"since": "not-a-date"}).context["form"].errors["since"] == ["Enter a valid date."]


def test_filter_choices_only_name_what_the_reader_may_see(client_for, lead_user, admin_user, team_a, team_b, events):
    lead_form = client_for(lead_user).get(URL).context["form"]
    assert list(lead_form.fields["team"].queryset) == [team_a]
    assert [value for value, _ in lead_form.fields["action"].choices] == ["", "team.update"]
    admin_form = client_for(admin_user).get(URL).context["form"]
    assert list(admin_form.fields["team"].queryset) == [team_a, team_b]
    assert [value for value, _ in admin_form.fields["action"].choices] == ["", "api_token.create", "team.update"]


def test_pagination_keeps_filters(client_for, admin_user, team_a):
    actor = Actor(user=admin_user)
    for i in range(55):
        audit_record(actor=actor, action="team.touch", target=team_a, team=team_a, after={"n": i})
    client = client_for(admin_user)
    first = client.get(URL, {"action": "team.touch"})
    assert len(first.context["events"]) == 50
    assert first.context["events"][0].after == {"n": 54}
    assert b"?action=team.touch&amp;page=2" in first.content
    second = client.get(URL, {"action": "team.touch", "page": "2"})
    assert [e.after["n"] for e in second.context["events"]] == [4, 3, 2, 1, 0]
    assert b"Page 2 of 2" in second.content


def test_empty_log_says_so(client_for, admin_user):
    response = client_for(admin_user).get(URL)
    assert b"No events yet." in response.content


@pytest.mark.parametrize("rows", [3, 10])
def test_audit_list_query_count_does_not_grow(client_for, admin_user, django_assert_max_num_queries, rows):
    actor = Actor(user=admin_user)
    for _ in range(rows):
        team = TeamFactory()
        services.team_update(actor=actor, team=team, name=f"{team.name} v2")
    client = client_for(admin_user)
    with django_assert_max_num_queries(12):  # 11 + the Approvals count in admins' navigation
        response = client.get(URL)
    assert len(response.context["events"]) == rows
    assert AuditEvent.objects.count() == rows
