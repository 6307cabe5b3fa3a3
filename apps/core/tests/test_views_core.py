"""Home page per role, the "no role yet" page, and the 403/404/500 pages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from apps.accounts.tests.factories import UserFactory
from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.inventory.tests.factories import ClusterFactory, GpuTypeFactory
from apps.teams import services
from apps.teams.models import Membership
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory, TeamFactory

HOME = reverse("core:home")


def test_anonymous_home_redirects_to_login(client_for, db):
    response = client_for(None).get(HOME)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


# --- no role yet ---------------------------------------------------------------------------------------------
def test_person_without_role_is_told_whom_to_ask(client_for, admin_user):
    UserFactory(username="root", email="root@example.test", is_superuser=True)
    UserFactory(username="gone-admin", email="gone@example.test", is_platform_admin=True, is_active=False)
    newcomer = UserFactory(username="newcomer")
    response = client_for(newcomer).get(HOME)
    html = " ".join(response.content.decode().split())
    assert response.status_code == 200
    assert "Ask a Pareto admin to add you to your team" in html
    assert [a.username for a in response.context["admins"]] == ["admin", "root"]
    assert 'href="mailto:admin@example.test"' in html and 'href="mailto:root@example.test"' in html
    assert "gone-admin" not in html
    # Nothing of the portal's data is shown.
    assert reverse("teams:list") not in html


def test_no_admin_at_all_says_how_to_make_one(client_for, db):
    response = client_for(UserFactory(username="first")).get(HOME)
    assert b"There is no Pareto admin yet" in response.content


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user", "admin_user"])
def test_people_with_a_role_get_the_portal_not_the_no_role_page(request, client_for, role):
    response = client_for(request.getfixturevalue(role)).get(HOME)
    assert response.templates[0].name == "core/home.html"
    assert b"You don&#x27;t have access to anything yet" not in response.content


# --- per role ------------------------------------------------------------------------------------------
def test_admin_home_counts_and_recent_events(client_for, admin_user, team_a, team_b):
    GpuTypeFactory.create_batch(2)
    ClusterFactory()
    CatalogModelFactory.create_batch(3)
    services.team_update(actor=Actor(user=admin_user), team=team_a, name="Renamed A")
    response = client_for(admin_user).get(HOME)
    counts = response.context["counts"]
    assert (counts.teams, counts.gpu_types, counts.clusters, counts.catalog_models) == (2, 2, 1, 3)
    html = " ".join(response.content.decode().split())
    assert '<span class="stat-value">3</span> <span class="stat-label">catalog models</span>' in html
    assert '<span class="stat-value">1</span> <span class="stat-label">cluster</span>' in html
    assert [e.action for e in response.context["recent_events"]] == ["team.update"]
    assert "Renamed A" in html
    assert response.context.get("budget_teams") is None


def test_finance_home_lists_budgets_and_cost_centers(client_for, finance_user, team_a, team_b):
    BudgetFactory(team=team_a, monthly_amount=Decimal("2500.00"), currency="EUR", alert_thresholds=[75, 100])
    response = client_for(finance_user).get(HOME)
    html = response.content.decode()
    assert [t.slug for t in response.context["budget_teams"]] == ["team-a", "team-b"]
    assert "2,500.00 EUR/month" in html and "75%" in html
    assert team_a.cost_center in html and team_b.cost_center in html
    assert reverse("teams:budget_set", args=["team-b"]) in html  # no budget yet: a link to set one
    assert response.context.get("counts") is None
    assert response.context.get("my_teams") is None


@pytest.mark.parametrize("role", ["member_user", "lead_user"])
def test_lead_and_member_home_shows_their_teams(request, client_for, team_a, team_b, role):
    gpu = GpuTypeFactory(sku="L4-24GB")
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=3)
    BudgetFactory(team=team_a, monthly_amount=Decimal("700.00"))
    GpuQuotaFactory(team=team_b, gpu_type=gpu, limit=99)
    response = client_for(request.getfixturevalue(role)).get(HOME)
    html = response.content.decode()
    assert [t.slug for t in response.context["my_teams"]] == ["team-a"]
    assert "3 \N{MULTIPLICATION SIGN} L4-24GB" in html and "700.00 USD/month" in html
    assert "99 \N{MULTIPLICATION SIGN} L4-24GB" not in html and "Team B" not in html
    assert response.context.get("counts") is None


def test_admin_who_is_also_a_member_sees_both_summaries(client_for, admin_user, team_a):
    MembershipFactory(user=admin_user, team=team_a, role=Membership.Role.LEAD)
    response = client_for(admin_user).get(HOME)
    assert response.context["counts"].teams == 1
    assert [t.slug for t in response.context["my_teams"]] == ["team-a"]


@pytest.mark.parametrize("rows", [3, 10])
def test_home_query_count_does_not_grow(client_for, admin_user, django_assert_max_num_queries, rows):
    user = UserFactory(username="everything", is_platform_admin=True, is_finance=True)
    gpu = GpuTypeFactory()
    actor = Actor(user=admin_user)
    for _ in range(rows):
        team = TeamFactory()
        MembershipFactory(user=user, team=team)
        MembershipFactory.create_batch(2, team=team)
        GpuQuotaFactory(team=team, gpu_type=gpu)
        BudgetFactory(team=team)
        services.team_update(actor=actor, team=team, cost_center="CC-NEW")
    client = client_for(user)
    with django_assert_max_num_queries(17):  # 16 + the Approvals count in admins' navigation
        response = client.get(HOME)
    assert len(response.context["budget_teams"]) == rows
    assert len(response.context["my_teams"]) == rows
    assert len(response.context["recent_events"]) == rows


# --- error pages -------------------------------------------------------------------------------------------
def test_404_page_says_what_happened_and_where_to_go(client_for, lead_user, team_b):
    response = client_for(lead_user).get(reverse("teams:detail", args=["team-b"]))
    assert response.status_code == 404
    assert b"Nothing here" in response.content
    assert f'href="{HOME}"'.encode() in response.content
    assert b"Traceback" not in response.content


def test_403_page_says_what_happened_and_where_to_go(client_for, member_user):
    response = client_for(member_user).get(reverse("audit:list"))
    assert response.status_code == 403
    assert b"You can't do that here" in response.content
    assert b"member-a" in response.content
    assert f'href="{HOME}"'.encode() in response.content


def test_500_page_renders_without_a_request_context(rf: RequestFactory):
    response = server_error(rf.get("/"))
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert b'href="/"' in response.content
    assert b"Traceback" not in response.content
