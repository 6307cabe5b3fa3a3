"""/api/v1/quota-requests/: leads ask for their teams, everyone reads their teams' requests, admins decide."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.endpoints.models import QuotaRequest
from apps.endpoints.tests.factories import QuotaRequestFactory
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams.models import GpuQuota
from apps.teams.tests.factories import GpuQuotaFactory, TeamFactory

LIST = reverse("api:quota-requests-list")


@pytest.fixture
def gpu(db):
    return GpuTypeFactory(sku="H100-80GB")


@pytest.fixture
def quota(team_a, gpu):
    return GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=8)


def url(quota_request: QuotaRequest, action: str = "detail") -> str:
    return reverse(f"api:quota-requests-{action}", args=[quota_request.pk])


def post(client, path: str, body: dict | None = None):
    return client.post(path, body or {}, content_type="application/json")


def state() -> tuple:
    return (
        list(QuotaRequest.objects.order_by("pk").values_list("pk", "state", "decision_reason")),
        list(GpuQuota.objects.order_by("pk").values_list("pk", "limit")),
        AuditEvent.objects.count(),
    )


def ask(**overrides) -> dict:
    return {"team": "team-a", "gpu_type": "H100-80GB", "requested_limit": 16, "justification": "Launch", **overrides}


def test_anonymous_gets_401(client_for, db):
    assert client_for(None).get(LIST).status_code == 401


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
    rows = client_for(request.getfixturevalue(role)).get(LIST).json()["results"]
    assert {row["team"] for row in rows} == expected


def test_another_teams_request_is_404(client_for, lead_user, team_b, gpu):
    theirs = QuotaRequestFactory(team=team_b, gpu_type=gpu)
    assert client_for(lead_user).get(url(theirs)).status_code == 404


def test_list_filters_and_query_count(client_for, finance_user, gpu):
    client = client_for(finance_user)

    def queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(LIST).status_code == 200
        return len(ctx.captured_queries)

    def add(n: int) -> None:
        for _ in range(n):
            QuotaRequestFactory(team=TeamFactory(), gpu_type=gpu, decided_by=UserFactory(), state="denied")

    add(3)
    few = queries()
    add(7)
    assert queries() == few <= 8
    assert client.get(LIST + "?state=denied").json()["count"] == 10
    assert client.get(LIST + "?state=pending").json()["count"] == 0
    assert client.get(LIST + "?state=maybe").status_code == 400


def test_lead_asks_for_more(client_for, lead_user, team_a, gpu, quota):
    response = post(client_for(lead_user), LIST, ask())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["team"], body["gpu_type"], body["requested_limit"], body["state"]) == (
        "team-a",
        "H100-80GB",
        16,
        "pending",
    )
    assert body["requested_by"] == "lead-a" and body["decided_by"] is None
    assert AuditEvent.objects.filter(action="quota_request.create").count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"requested_limit": 8}, "requested_limit"),
        ({"requested_limit": "a lot"}, "requested_limit"),
        ({"justification": ""}, "justification"),
        ({"gpu_type": "TPU"}, "gpu_type"),
    ],
)
def test_bad_ask_is_json_by_field_and_changes_nothing(client_for, lead_user, quota, overrides, field):
    before = state()
    response = post(client_for(lead_user), LIST, ask(**overrides))
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert state() == before


@pytest.mark.parametrize("role", ["member_user", "finance_user", "other_lead"])
def test_only_the_teams_lead_or_an_admin_asks(request, client_for, quota, role):
    before = state()
    assert post(client_for(request.getfixturevalue(role)), LIST, ask()).status_code == 403
    assert state() == before


def test_requests_are_not_edited_or_deleted(client_for, admin_user, team_a, gpu):
    quota_request = QuotaRequestFactory(team=team_a, gpu_type=gpu)
    client = client_for(admin_user)
    assert client.patch(url(quota_request), {"requested_limit": 99}, content_type="application/json").status_code == 405
    assert client.delete(url(quota_request)).status_code == 405


def test_admin_approves(client_for, admin_user, team_a, gpu, quota):
    quota_request = QuotaRequestFactory(team=team_a, gpu_type=gpu, requested_limit=32)
    response = post(client_for(admin_user), url(quota_request, "approve"))
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["decided_by"]) == ("approved", "admin")
    assert GpuQuota.objects.get(team=team_a, gpu_type=gpu).limit == 32
    again = post(client_for(admin_user), url(quota_request, "approve"))
    assert again.status_code == 400 and again.json() == {"non_field_errors": ["This request is already approved."]}


def test_deny_needs_a_reason(client_for, admin_user, team_a, gpu, quota):
    quota_request = QuotaRequestFactory(team=team_a, gpu_type=gpu)
    client = client_for(admin_user)
    before = state()
    response = post(client, url(quota_request, "deny"))
    assert response.status_code == 400 and list(response.json()) == ["reason"]
    assert state() == before
    response = post(client, url(quota_request, "deny"), {"reason": "Not this quarter."})
    assert (response.json()["state"], response.json()["decision_reason"]) == ("denied", "Not this quarter.")
    assert GpuQuota.objects.get(team=team_a, gpu_type=gpu).limit == 8


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_decide(request, client_for, team_a, gpu, quota, role):
    quota_request = QuotaRequestFactory(team=team_a, gpu_type=gpu)
    client = client_for(request.getfixturevalue(role))
    before = state()
    assert post(client, url(quota_request, "approve")).status_code == 403
    assert post(client, url(quota_request, "deny"), {"reason": "no"}).status_code == 403
    assert state() == before
