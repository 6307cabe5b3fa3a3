"""Cost pages and the metering API: who sees what, finance's actions, exports, bad input, and query counts."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.services import Actor
from apps.metering.accrual import accrue_minutes
from apps.metering.ingest import ingest
from apps.metering.models import Statement
from apps.metering.rollup import rollup
from apps.metering.scrape import parse_text
from apps.metering.services import statements_generate
from apps.teams.tests.factories import BudgetFactory, TeamFactory

from .factories import metered_endpoint
from .helpers import Replica, exposition

pytestmark = pytest.mark.django_db
OCTOBER = dt.date(2026, 10, 1)
CREATED = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


def october_usage(team, name="chat", *, gpus=1):
    """An hour of GPU time and two requests on October 5."""
    endpoint = metered_endpoint(
        team=team, name=name, sku=f"H100-{team.slug}", gpus_per_replica=gpus, created_at=CREATED
    )
    start = dt.datetime(2026, 10, 5, 10, tzinfo=dt.UTC)
    replica = Replica(endpoint.served_model_id)
    ingest(endpoints=[endpoint], samples=parse_text(exposition([replica]), source="s"), at=start)
    replica.serve(prompt=1000, generation=200, e2e=0.4)
    replica.serve(prompt=3000, generation=600, e2e=0.9)
    ingest(
        endpoints=[endpoint], samples=parse_text(exposition([replica]), source="s"), at=start + dt.timedelta(minutes=1)
    )
    accrue_minutes([start + dt.timedelta(minutes=i) for i in range(60)])
    return endpoint


@pytest.fixture
def two_teams(team_a, team_b):
    BudgetFactory(team=team_a, monthly_amount=Decimal("100.00"))
    a = october_usage(team_a)
    b = october_usage(team_b, name="secret", gpus=2)
    rollup()
    statements_generate(actor=Actor.system(), month=OCTOBER, now=dt.datetime(2026, 11, 2, tzinfo=dt.UTC))
    return a, b


# --- pages ---------------------------------------------------------------------------------------
def test_team_page_shows_cost_tokens_and_latency(two_teams, lead_user, client_for, django_assert_max_num_queries):
    endpoint, _ = two_teams
    client = client_for(lead_user)
    url = reverse("metering:team", args=["team-a"]) + "?month=2026-10"
    with django_assert_max_num_queries(16):
        response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "2.50 USD" in body  # 1 GPU-hour at 2.50
    assert endpoint.name in body
    assert "4,800" in body  # tokens
    assert "secret" not in body


def test_another_teams_cost_page_is_not_found(two_teams, lead_user, client_for):
    assert client_for(lead_user).get(reverse("metering:team", args=["team-b"])).status_code == 404


def test_a_bad_month_shows_next_to_the_field(two_teams, lead_user, client_for):
    response = client_for(lead_user).get(reverse("metering:team", args=["team-a"]) + "?month=13/2026")
    assert response.status_code == 200
    assert "Give a month as YYYY-MM" in response.content.decode()


def test_overview_scopes_teams_and_keeps_query_count_flat(
    two_teams, finance_user, lead_user, client_for, django_assert_max_num_queries
):
    for i in range(6):
        team = TeamFactory()
        BudgetFactory(team=team)
        october_usage(team, name=f"ep{i}")
    rollup()
    client = client_for(finance_user)
    with django_assert_max_num_queries(14):
        response = client.get(reverse("metering:overview") + "?month=2026-10")
    body = response.content.decode()
    assert "team-b" in body and "5.00 USD" in body
    lead_body = client_for(lead_user).get(reverse("metering:overview") + "?month=2026-10").content.decode()
    assert "team-a" in lead_body and "team-b" not in lead_body


def test_finance_generates_and_closes_statements(two_teams, finance_user, client_for):
    client = client_for(finance_user)
    response = client.post(reverse("metering:generate"), {"month": "2026-10"})
    assert response.status_code == 302
    statement = Statement.objects.get(team__slug="team-a", month=OCTOBER)
    response = client.get(reverse("metering:close", args=[statement.pk]))
    assert "never changes" in response.content.decode()
    assert client.post(reverse("metering:close", args=[statement.pk])).status_code == 302
    statement.refresh_from_db()
    assert statement.is_closed and statement.closed_by == finance_user
    # Regenerating leaves it alone and says so.
    response = client.post(reverse("metering:generate"), {"month": "2026-10"}, follow=True)
    assert "1 closed statement(s) left as they are" in response.content.decode()


def test_generating_a_month_that_has_not_ended_changes_nothing(finance_user, client_for):
    future = dt.date.today().replace(day=1) + dt.timedelta(days=40)
    response = client_for(finance_user).post(reverse("metering:generate"), {"month": f"{future:%Y-%m}"})
    assert response.status_code == 200
    assert "has not ended yet" in response.content.decode()
    response = client_for(finance_user).post(reverse("metering:generate"), {"month": "2026-99"})
    assert "Give a month as YYYY-MM" in response.content.decode()
    assert not Statement.objects.exists()


def test_statements_page_lists_only_visible_statements(two_teams, lead_user, client_for, django_assert_max_num_queries):
    client = client_for(lead_user)
    with django_assert_max_num_queries(10):
        body = client.get(reverse("metering:statements")).content.decode()
    assert "Team A" in body and "Team B" not in body
    statement = Statement.objects.get(team__slug="team-b")
    assert client_for(lead_user).get(reverse("metering:statement", args=[statement.pk])).status_code == 404


def test_budget_policy_form(two_teams, finance_user, client_for):
    url = reverse("metering:policy", args=["team-a"])
    assert client_for(finance_user).post(url, {"block_requests_over_budget": "on"}).status_code == 302
    from apps.teams.models import Team

    assert Team.objects.get(slug="team-a").block_requests_over_budget is True


# --- API -----------------------------------------------------------------------------------------
def test_chargeback_json_is_scoped(two_teams, lead_user, finance_user, client_for, django_assert_max_num_queries):
    client = client_for(finance_user)
    with django_assert_max_num_queries(8):
        body = client.get(reverse("api:chargeback") + "?month=2026-10").json()
    assert {s["team"] for s in body["statements"]} == {"team-a", "team-b"}
    assert body["time_zone"] == "UTC"
    a = next(s for s in body["statements"] if s["team"] == "team-a")
    assert a["total"] == "2.50" and a["budget_amount"] == "100.00" and a["variance"] == "97.50"
    (line,) = a["lines"]
    assert (line["gpu_hours"], line["rate"], line["cost"]) == ("1.0000", "2.5000", "2.50")
    assert (line["prompt_tokens"], line["generation_tokens"]) == (4000, 800)
    assert line["cost_per_million_tokens"] == "520.8333"
    lead = client_for(lead_user).get(reverse("api:chargeback") + "?month=2026-10").json()
    assert [s["team"] for s in lead["statements"]] == ["team-a"]


def test_chargeback_csv(two_teams, finance_user, client_for):
    response = client_for(finance_user).get("/api/v1/chargeback.csv?month=2026-10")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="chargeback-2026-10.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    for team in ("team-a", "team-b"):
        lines = [r for r in rows if r["team"] == team and r["kind"] == "usage"]
        (total,) = [r for r in rows if r["team"] == team and r["kind"] == "total"]
        assert sum(Decimal(r["cost"]) for r in lines) == Decimal(total["cost"])
    assert next(r for r in rows if r["team"] == "team-b" and r["kind"] == "total")["cost"] == "5.00"
    same = client_for(finance_user).get(reverse("api:chargeback") + "?month=2026-10&format=csv")
    assert same.content == response.content


def test_chargeback_bad_month_is_a_field_error(finance_user, client_for):
    response = client_for(finance_user).get(reverse("api:chargeback") + "?month=2026-1")
    assert response.status_code == 400
    assert list(response.json()) == ["month"]


def test_statements_api_close(two_teams, finance_user, lead_user, client_for):
    statement = Statement.objects.get(team__slug="team-a")
    url = reverse("api:statements-close", args=[statement.pk])
    assert client_for(lead_user).post(url).status_code == 403
    response = client_for(finance_user).post(url)
    assert response.status_code == 200 and response.json()["status"] == "closed"
    assert client_for(finance_user).post(url).json() == {"non_field_errors": ["This statement is already closed."]}


def test_generate_api_refuses_bad_input_and_changes_nothing(finance_user, client_for):
    client = client_for(finance_user)
    response = client.post(reverse("api:chargeback-generate"), {"month": "soon"}, content_type="application/json")
    assert response.status_code == 400 and "month" in response.json()
    assert not Statement.objects.exists()


def test_usage_api_gives_cost_tokens_and_percentiles(two_teams, lead_user, client_for, django_assert_max_num_queries):
    client = client_for(lead_user)
    with django_assert_max_num_queries(10):
        body = client.get(reverse("api:usage") + "?month=2026-10").json()
    (row,) = body["endpoints"]
    assert row["team"] == "team-a"
    assert row["cost"] == {"USD": "2.5000"}
    assert (row["prompt_tokens"], row["generation_tokens"], row["requests"]) == (4000, 800, 2)
    assert row["gpu_hours"] == 1.0
    assert row["utilisation"] == pytest.approx(1 / 60)  # one minute of the hour had traffic
    p50 = row["latency"]["e2e"]["p50"]
    assert 0.3 < p50 <= 0.5  # the first of the two requests (0.4 s) is in (0.3, 0.5]


def test_usage_series_per_hour_and_day(two_teams, lead_user, client_for):
    endpoint, other = two_teams
    url = reverse("api:usage-endpoint", args=[endpoint.pk])
    body = client_for(lead_user).get(url + "?start=2026-10-05T00:00:00Z&end=2026-10-06T00:00:00Z").json()
    (row,) = body["rows"]
    assert row["cost"] == "2.5000000000" and row["gpu_hours"] == 1.0
    daily = client_for(lead_user).get(url + "?resolution=day&start=2026-10-01T00:00:00Z&end=2026-11-01T00:00:00Z")
    assert [r["start"] for r in daily.json()["rows"]] == ["2026-10-05"]
    assert client_for(lead_user).get(reverse("api:usage-endpoint", args=[other.pk])).status_code == 404
    bad = client_for(lead_user).get(url + "?start=yesterday")
    assert bad.status_code == 400 and list(bad.json()) == ["start"]
