"""Quota request pages: leads ask for their teams, everyone sees their teams' requests, admins decide."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.endpoints.models import QuotaRequest
from apps.endpoints.tests.factories import QuotaRequestFactory
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams.models import GpuQuota
from apps.teams.tests.factories import GpuQuotaFactory, TeamFactory

LIST = reverse("endpoints:quota_requests")
NEW = reverse("endpoints:quota_request_new")


@pytest.fixture
def gpu(db):
    return GpuTypeFactory(sku="H100-80GB")


@pytest.fixture
def quota(team_a, gpu):
    return GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=8)


def state() -> tuple:
    return (
        list(QuotaRequest.objects.order_by("pk").values_list("pk", "state", "requested_limit", "decision_reason")),
        list(GpuQuota.objects.order_by("pk").values_list("pk", "limit")),
        AuditEvent.objects.count(),
    )


def field_errors(response, field: str) -> list[str]:
    errors = list(response.context["form"].errors.get(field, []))
    if errors:
        assert f'id="id_{field}_error"' in response.content.decode()
    return errors


def new_data(team, gpu, **overrides) -> dict:
    return {"team": team.pk, "gpu_type": gpu.pk, "requested_limit": "16", "justification": "Launch week", **overrides}


# --- asking ---------------------------------------------------------------------------------------------
def test_lead_asks_for_more_quota(client_for, lead_user, team_a, gpu, quota):
    client = client_for(lead_user)
    page = client.get(NEW + "?team=team-a").content.decode()
    assert "Team A's GPU quota now" in page and ">8<" in page  # the current limit, to ask sensibly
    response = client.post(NEW, new_data(team_a, gpu))
    assert response["Location"] == LIST
    request = QuotaRequest.objects.get()
    assert (request.team, request.gpu_type, request.requested_limit, request.state) == (team_a, gpu, 16, "pending")
    assert request.requested_by == lead_user
    event = AuditEvent.objects.get(action="quota_request.create")
    assert (event.team_id, event.after["current"], event.after["requested_limit"]) == (team_a.pk, 8, 16)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"requested_limit": "8"}, "requested_limit"),  # not more than now
        ({"requested_limit": "many"}, "requested_limit"),
        ({"justification": "  "}, "justification"),
        ({"gpu_type": "999999"}, "gpu_type"),
    ],
)
def test_bad_quota_request_shows_field_error_and_changes_nothing(
    client_for, lead_user, team_a, gpu, quota, overrides, field
):
    before = state()
    response = client_for(lead_user).post(NEW, new_data(team_a, gpu, **overrides))
    assert response.status_code == 200
    assert field_errors(response, field)
    assert state() == before


def test_a_second_pending_request_for_the_same_gpu_is_refused(client_for, lead_user, team_a, gpu, quota):
    QuotaRequestFactory(team=team_a, gpu_type=gpu, requested_by=lead_user)
    before = state()
    response = client_for(lead_user).post(NEW, new_data(team_a, gpu))
    assert "already waiting" in field_errors(response, "gpu_type")[0]
    assert state() == before


def test_lead_cannot_ask_for_another_team(client_for, other_lead, team_a, gpu, quota):
    before = state()
    response = client_for(other_lead).post(NEW, new_data(team_a, gpu))
    assert field_errors(response, "team") == ["Choose one of the teams you lead."]
    assert state() == before


@pytest.mark.parametrize("role", ["member_user", "finance_user"])
def test_members_and_finance_cannot_ask(request, client_for, team_a, gpu, quota, role):
    client = client_for(request.getfixturevalue(role))
    before = state()
    assert client.get(NEW).status_code == 403
    assert client.post(NEW, new_data(team_a, gpu)).status_code == 403
    assert state() == before


# --- the list -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("member_user", {"team-a"}),
        ("lead_user", {"team-a"}),
        ("other_lead", {"team-b"}),
        ("finance_user", {"team-a", "team-b"}),
        ("admin_user", {"team-a", "team-b"}),
    ],
)
def test_list_is_scoped_by_role(request, client_for, team_a, team_b, gpu, role, expected):
    QuotaRequestFactory(team=team_a, gpu_type=gpu)
    QuotaRequestFactory(team=team_b, gpu_type=gpu)
    response = client_for(request.getfixturevalue(role)).get(LIST)
    assert {q.team.slug for q, _limit in response.context["rows"]} == expected


def test_list_shows_state_limits_and_decisions(client_for, member_user, admin_user, team_a, gpu, quota):
    pending = QuotaRequestFactory(team=team_a, gpu_type=gpu, requested_limit=24, justification="Eval season")
    QuotaRequestFactory(
        team=team_a,
        gpu_type=GpuTypeFactory(sku="L4"),
        state=QuotaRequest.State.DENIED,
        decided_by=admin_user,
        decision_reason="Use spot capacity.",
    )
    client = client_for(member_user)
    html = client.get(LIST).content.decode()
    assert "Eval season" in html and ">24<" in html and ">8<" in html
    assert "Denied" in html and "Use spot capacity." in html and "by admin" in html
    assert reverse("endpoints:quota_request_approve", args=[pending.pk]) not in html  # members only read
    assert [q.state for q, _ in client.get(LIST + "?state=denied").context["rows"]] == ["denied"]


def test_admin_sees_decision_forms_for_pending_only(client_for, admin_user, team_a, gpu):
    pending = QuotaRequestFactory(team=team_a, gpu_type=gpu)
    done = QuotaRequestFactory(team=team_a, gpu_type=GpuTypeFactory(sku="L4"), state=QuotaRequest.State.APPROVED)
    html = client_for(admin_user).get(LIST).content.decode()
    assert reverse("endpoints:quota_request_approve", args=[pending.pk]) in html
    assert reverse("endpoints:quota_request_deny", args=[pending.pk]) in html
    assert reverse("endpoints:quota_request_approve", args=[done.pk]) not in html


def test_list_empty_states(client_for, lead_user, member_user):
    lead = client_for(lead_user).get(LIST).content.decode()
    assert "No quota requests yet." in lead and NEW in lead
    member = client_for(member_user).get(LIST).content.decode()
    assert "No quota requests yet." in member and NEW not in member


def test_list_query_count_does_not_grow(client_for, finance_user, gpu):
    client = client_for(finance_user)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(LIST).status_code == 200
        return len(ctx.captured_queries)

    def add(n: int) -> None:
        for _ in range(n):
            team = TeamFactory()
            GpuQuotaFactory(team=team, gpu_type=gpu, limit=2)
            QuotaRequestFactory(team=team, gpu_type=gpu)

    add(3)
    few = queries()
    add(7)
    assert queries() == few <= 10
    assert len(client.get(LIST).context["rows"]) == 10


# --- deciding -------------------------------------------------------------------------------------------
def test_admin_approves_and_the_quota_becomes_the_requested_limit(client_for, admin_user, team_a, gpu, quota):
    request = QuotaRequestFactory(team=team_a, gpu_type=gpu, requested_limit=24)
    queue = reverse("endpoints:queue")
    response = client_for(admin_user).post(
        reverse("endpoints:quota_request_approve", args=[request.pk]), {"next": queue}
    )
    assert response["Location"] == queue
    request.refresh_from_db()
    assert (request.state, request.decided_by) == ("approved", admin_user)
    assert GpuQuota.objects.get(team=team_a, gpu_type=gpu).limit == 24
    assert {"quota_request.approved", "quota.update"} <= set(AuditEvent.objects.values_list("action", flat=True))


def test_deny_needs_a_reason(client_for, admin_user, team_a, gpu, quota):
    request = QuotaRequestFactory(team=team_a, gpu_type=gpu, justification="Launch week")
    client = client_for(admin_user)
    url = reverse("endpoints:quota_request_deny", args=[request.pk])
    assert "Team A asks for 16 x H100-80GB: “Launch week”" in client.get(url).content.decode()
    before = state()
    response = client.post(url, {"reason": ""})
    assert field_errors(response, "reason") == ["Say why, so the team knows what to change."]
    assert state() == before
    assert client.post(url, {"reason": "Budget is spent."})["Location"] == LIST
    request.refresh_from_db()
    assert (request.state, request.decision_reason) == ("denied", "Budget is spent.")
    assert GpuQuota.objects.get(team=team_a, gpu_type=gpu).limit == 8


def test_deciding_twice_says_why(client_for, admin_user, team_a, gpu, quota):
    request = QuotaRequestFactory(team=team_a, gpu_type=gpu, state=QuotaRequest.State.DENIED)
    response = client_for(admin_user).post(reverse("endpoints:quota_request_approve", args=[request.pk]), follow=True)
    assert "This request is already denied." in response.content.decode()
    assert GpuQuota.objects.get(team=team_a, gpu_type=gpu).limit == 8


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_decide(request, client_for, team_a, gpu, quota, role):
    quota_request = QuotaRequestFactory(team=team_a, gpu_type=gpu)
    client = client_for(request.getfixturevalue(role))
    before = state()
    assert client.post(reverse("endpoints:quota_request_approve", args=[quota_request.pk])).status_code == 403
    deny = reverse("endpoints:quota_request_deny", args=[quota_request.pk])
    assert client.post(deny, {"reason": "x"}).status_code == 403
    assert state() == before
