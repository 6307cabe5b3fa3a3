from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams.models import Budget, GpuQuota
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, TeamFactory

pytestmark = pytest.mark.django_db

QUOTAS = reverse("api:quotas-list")
BUDGETS = reverse("api:budgets-list")
# session, user, memberships (roles), count, page, session save (3)
LIST_QUERIES = 8


@pytest.fixture
def gpu():
    return GpuTypeFactory(sku="H100-80GB")


@pytest.fixture
def quotas(team_a, team_b, gpu) -> tuple[GpuQuota, GpuQuota]:
    return GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=8), GpuQuotaFactory(team=team_b, gpu_type=gpu, limit=4)


@pytest.fixture
def budgets(team_a, team_b) -> tuple[Budget, Budget]:
    return BudgetFactory(team=team_a), BudgetFactory(team=team_b, monthly_amount=Decimal("500.00"))


def quota_url(quota: GpuQuota) -> str:
    return reverse("api:quotas-detail", args=[quota.pk])


def budget_url(budget: Budget) -> str:
    return reverse("api:budgets-detail", args=[budget.pk])


def teams_of(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["team"] for row in response.json()["results"]]


SCOPES = [
    ("member_user", ["team-a"]),
    ("lead_user", ["team-a"]),
    ("other_lead", ["team-b"]),
    ("finance_user", ["team-a", "team-b"]),
    ("admin_user", ["team-a", "team-b"]),
]


# --- quotas ---------------------------------------------------------------------------------------
def test_anonymous_gets_401(client_for, quotas, budgets):
    assert client_for(None).get(QUOTAS).status_code == 401
    assert client_for(None).get(BUDGETS).status_code == 401


@pytest.mark.parametrize(("role", "expected"), SCOPES)
def test_quota_list_is_scoped_by_team_visibility(request, client_for, quotas, role, expected):
    assert teams_of(client_for(request.getfixturevalue(role)).get(QUOTAS)) == expected


def test_another_teams_quota_is_404(client_for, lead_user, quotas):
    assert client_for(lead_user).get(quota_url(quotas[1])).status_code == 404
    assert client_for(lead_user).get(quota_url(quotas[0])).json()["limit"] == 8


def test_team_filter(client_for, finance_user, quotas):
    assert teams_of(client_for(finance_user).get(QUOTAS, {"team": "team-b"})) == ["team-b"]


def test_admin_sets_a_quota_with_an_audit_event(client_for, admin_user, team_a, gpu):
    response = client_for(admin_user).post(
        QUOTAS, {"team": "team-a", "gpu_type": "H100-80GB", "limit": 16}, content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    quota = GpuQuota.objects.get(team=team_a, gpu_type=gpu)
    assert quota.limit == 16
    event = AuditEvent.objects.get(action="quota.create")
    assert event.actor == admin_user and event.team_id == team_a.pk


def test_setting_an_existing_pair_replaces_the_limit(client_for, admin_user, quotas):
    response = client_for(admin_user).post(
        QUOTAS, {"team": "team-a", "gpu_type": "H100-80GB", "limit": 2}, content_type="application/json"
    )
    assert response.status_code == 201
    assert response.json()["id"] == quotas[0].pk
    assert GpuQuota.objects.count() == 2
    quotas[0].refresh_from_db()
    assert quotas[0].limit == 2
    assert AuditEvent.objects.get(action="quota.update").after == {"limit": 2}


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_write_quotas(request, client_for, quotas, role):
    client = client_for(request.getfixturevalue(role))
    data = {"team": "team-a", "gpu_type": "H100-80GB", "limit": 99}
    assert client.post(QUOTAS, data, content_type="application/json").status_code == 403
    assert client.patch(quota_url(quotas[0]), {"limit": 99}, content_type="application/json").status_code == 403
    assert client.delete(quota_url(quotas[0])).status_code == 403
    assert sorted(GpuQuota.objects.values_list("limit", flat=True)) == [4, 8]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"team": "team-a", "gpu_type": "H100-80GB", "limit": -1}, "limit"),
        ({"team": "team-a", "gpu_type": "NO-SUCH-GPU", "limit": 1}, "gpu_type"),
        ({"team": "Not A Slug", "gpu_type": "H100-80GB", "limit": 1}, "team"),
        ({"team": "team-a", "gpu_type": "H100-80GB", "limit": "many"}, "limit"),
    ],
)
def test_bad_quota_input_names_the_field_and_changes_nothing(client_for, admin_user, quotas, data, field):
    response = client_for(admin_user).post(QUOTAS, data, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert sorted(GpuQuota.objects.values_list("limit", flat=True)) == [4, 8]
    assert not AuditEvent.objects.exists()


def test_negative_quota_update_changes_nothing(client_for, admin_user, quotas):
    response = client_for(admin_user).patch(quota_url(quotas[0]), {"limit": -3}, content_type="application/json")
    assert response.status_code == 400 and "limit" in response.json()
    quotas[0].refresh_from_db()
    assert quotas[0].limit == 8


def test_admin_changes_and_deletes_a_quota(client_for, admin_user, quotas):
    client = client_for(admin_user)
    response = client.patch(quota_url(quotas[1]), {"limit": 6}, content_type="application/json")
    assert response.status_code == 200 and response.json()["limit"] == 6
    assert client.delete(quota_url(quotas[1])).status_code == 204
    assert list(GpuQuota.objects.values_list("pk", flat=True)) == [quotas[0].pk]
    assert [e.action for e in AuditEvent.objects.order_by("id")] == ["quota.update", "quota.delete"]


def test_quota_list_query_count_is_constant(client_for, admin_user, django_assert_max_num_queries):
    gpus = GpuTypeFactory.create_batch(3)
    for team in TeamFactory.create_batch(4):
        for gpu_type in gpus:
            GpuQuotaFactory(team=team, gpu_type=gpu_type)
    client = client_for(admin_user)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(QUOTAS)
    assert response.json()["count"] == 12


# --- budgets --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "expected"), SCOPES)
def test_budget_list_is_scoped_by_team_visibility(request, client_for, budgets, role, expected):
    assert teams_of(client_for(request.getfixturevalue(role)).get(BUDGETS)) == expected


def test_another_teams_budget_is_404(client_for, other_lead, budgets):
    assert client_for(other_lead).get(budget_url(budgets[0])).status_code == 404


@pytest.mark.parametrize("role", ["finance_user", "admin_user"])
def test_finance_and_admin_set_budgets_with_an_audit_event(request, client_for, team_a, role):
    user = request.getfixturevalue(role)
    response = client_for(user).post(
        BUDGETS,
        {"team": "team-a", "monthly_amount": "2500.00", "currency": "EUR", "alert_thresholds": [100, 50]},
        content_type="application/json",
    )
    assert response.status_code == 201, response.json()
    budget = Budget.objects.get(team=team_a)
    assert (budget.monthly_amount, budget.currency, budget.alert_thresholds) == (Decimal("2500.00"), "EUR", [50, 100])
    event = AuditEvent.objects.get(action="budget.create")
    assert event.actor == user and event.team_id == team_a.pk


def test_finance_changes_a_budget_partially(client_for, finance_user, budgets):
    response = client_for(finance_user).patch(
        budget_url(budgets[0]), {"alert_thresholds": [90]}, content_type="application/json"
    )
    assert response.status_code == 200, response.json()
    budgets[0].refresh_from_db()
    assert (budgets[0].monthly_amount, budgets[0].currency, budgets[0].alert_thresholds) == (
        Decimal("10000.00"),
        "USD",
        [90],
    )
    assert AuditEvent.objects.get(action="budget.update").after == {"alert_thresholds": [90]}


@pytest.mark.parametrize("role", ["member_user", "lead_user"])
def test_leads_and_members_cannot_write_budgets(request, client_for, budgets, role):
    client = client_for(request.getfixturevalue(role))
    data = {"team": "team-a", "monthly_amount": "1.00"}
    assert client.post(BUDGETS, data, content_type="application/json").status_code == 403
    assert client.patch(budget_url(budgets[0]), data, content_type="application/json").status_code == 403
    budgets[0].refresh_from_db()
    assert budgets[0].monthly_amount == Decimal("10000.00")


def test_budgets_cannot_be_deleted(client_for, admin_user, budgets):
    assert client_for(admin_user).delete(budget_url(budgets[0])).status_code == 405
    assert Budget.objects.count() == 2


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"team": "team-a", "monthly_amount": "-10.00"}, "monthly_amount"),
        ({"team": "team-a", "monthly_amount": "10.00", "currency": "usd"}, "currency"),
        ({"team": "team-a", "monthly_amount": "10.00", "alert_thresholds": [0]}, "alert_thresholds"),
        ({"team": "no-such-team", "monthly_amount": "10.00"}, "team"),
    ],
)
def test_bad_budget_input_names_the_field_and_changes_nothing(client_for, finance_user, budgets, data, field):
    response = client_for(finance_user).post(BUDGETS, data, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert sorted(Budget.objects.values_list("monthly_amount", flat=True)) == [Decimal("500.00"), Decimal("10000.00")]
    assert not AuditEvent.objects.exists()


def test_budget_list_query_count_is_constant(client_for, finance_user, django_assert_max_num_queries):
    for team in TeamFactory.create_batch(12):
        BudgetFactory(team=team)
    client = client_for(finance_user)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(BUDGETS)
    assert response.json()["count"] == 12
