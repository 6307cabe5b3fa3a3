"""Finance's dashboard: monthly totals precomputed exactly from the daily rollups (and kept current by the rollup),
cost per team per month with the top teams and the rest, budget against actual and forecast, currencies never added,
the month picker, htmx, CSV, drill-down, permissions and a query count that does not grow with teams."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from fractions import Fraction

import pytest
from django.db.models import F, Sum
from django.urls import reverse

from apps.audit.services import Actor
from apps.core.charts import Chart, assert_valid_figure
from apps.endpoints.models import Endpoint
from apps.metering import charts as cost_charts
from apps.metering import monthly
from apps.metering.accrual import accrue_minutes
from apps.metering.models import Statement, TeamMonthCost, UsageDay
from apps.metering.money import exact_cost, round_money
from apps.metering.monthly import MonthCost, refresh_team_months
from apps.metering.rollup import rollup
from apps.metering.selectors import current_month, next_month, previous_month
from apps.metering.services import statement_close, statements_generate
from apps.metering.tests.factories import metered_endpoint
from apps.teams.tests.factories import BudgetFactory, TeamFactory

pytestmark = pytest.mark.django_db
THIS = current_month()
LAST = previous_month(THIS)
OLDER = previous_month(LAST)
CREATED = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def day_row(endpoint: Endpoint, day: dt.date, *, gpu: int, idle: int = 0, rate: str = "2.5000", currency="USD"):
    price = Decimal(rate)
    return UsageDay.objects.create(
        endpoint=endpoint,
        team_id=endpoint.team_id,
        day=day,
        gpu_seconds=gpu,
        idle_gpu_seconds=idle,
        rate=price,
        currency=currency,
        price_seconds=price * gpu,
        prompt_tokens=gpu,
        generation_tokens=2 * gpu,
        requests=3,
        minutes=gpu // 60,
    )


def endpoint_for(team, name="chat", **kwargs) -> Endpoint:
    return metered_endpoint(team=team, name=name, sku=f"{team.slug}-{name}", created_at=CREATED, **kwargs)


def charts_of(response) -> list[Chart]:
    return list(response.context["charts"].values())


def valid(response) -> None:
    for chart in charts_of(response):
        assert_valid_figure(chart)
        assert chart.is_empty or chart.data, chart.key


# --- the monthly table --------------------------------------------------------------------------
def test_refresh_team_months_equals_the_daily_sums_exactly(team_a, team_b):
    chat, code = endpoint_for(team_a, "chat"), endpoint_for(team_a, "code")
    other = endpoint_for(team_b, "chat")
    day_row(chat, LAST + dt.timedelta(days=3), gpu=3601, idle=1000, rate="2.5001")
    day_row(chat, LAST + dt.timedelta(days=3), gpu=77, idle=7, rate="3.1000")  # a price change in the day
    day_row(code, LAST + dt.timedelta(days=20), gpu=86400, idle=86400, rate="1.2345")
    day_row(code, THIS, gpu=600, idle=0, rate="1.2345")
    day_row(other, LAST, gpu=50, idle=10, rate="0.9000", currency="EUR")
    day_row(other, LAST + dt.timedelta(days=1), gpu=40, idle=0, rate="0.9000", currency="USD")

    assert refresh_team_months() == 4
    for row in TeamMonthCost.objects.all():
        days = UsageDay.objects.filter(
            team_id=row.team_id, currency=row.currency, day__gte=row.month, day__lt=next_month(row.month)
        )
        sums = days.aggregate(
            p=Sum("price_seconds"),
            i=Sum(F("idle_gpu_seconds") * F("rate")),
            g=Sum("gpu_seconds"),
            ig=Sum("idle_gpu_seconds"),
            pt=Sum("prompt_tokens"),
            gt=Sum("generation_tokens"),
            r=Sum("requests"),
        )
        assert (row.price_seconds, row.idle_price_seconds) == (sums["p"], sums["i"])
        assert (row.gpu_seconds, row.idle_gpu_seconds) == (sums["g"], sums["ig"])
        assert (row.prompt_tokens, row.generation_tokens, row.requests) == (sums["pt"], sums["gt"], sums["r"])
    a_last = TeamMonthCost.objects.get(team=team_a, month=LAST)
    assert a_last.price_seconds == Decimal("2.5001") * 3601 + Decimal("3.1") * 77 + Decimal("1.2345") * 86400
    assert a_last.idle_price_seconds == Decimal("2.5001") * 1000 + Decimal("3.1") * 7 + Decimal("1.2345") * 86400
    assert set(TeamMonthCost.objects.filter(team=team_b).values_list("currency", flat=True)) == {"EUR", "USD"}

    # One month, one team: only those rows change; a month with no days left loses its rows on a full refresh.
    UsageDay.objects.filter(team=team_a, day=THIS).delete()
    assert refresh_team_months([THIS + dt.timedelta(days=5)], team_ids=[team_b.pk]) == 0
    assert TeamMonthCost.objects.filter(team=team_a, month=THIS).exists()
    refresh_team_months()
    assert not TeamMonthCost.objects.filter(team=team_a, month=THIS).exists()
    assert TeamMonthCost.objects.count() == 3


def test_the_rollup_keeps_the_month_current_and_statements_agree(team_a):
    endpoint = endpoint_for(team_a, gpus_per_replica=2)
    start = dt.datetime.combine(LAST + dt.timedelta(days=9), dt.time(10), tzinfo=dt.UTC)
    accrue_minutes([start + dt.timedelta(minutes=i) for i in range(30)])
    rollup()
    row = TeamMonthCost.objects.get(team=team_a, month=LAST)
    assert (row.gpu_seconds, row.price_seconds) == (30 * 60 * 2, Decimal("2.5") * 3600)

    accrue_minutes([start + dt.timedelta(hours=5, minutes=i) for i in range(15)])  # later the same day
    rollup()
    row = TeamMonthCost.objects.get(team=team_a, month=LAST)  # rebuilt: a new row
    assert row.gpu_seconds == 45 * 60 * 2
    assert exact_cost(row.price_seconds) == Fraction(45 * 2 * 5, 2 * 60)  # 90 GPU-minutes at 2.50/h = 3.75

    report = statements_generate(actor=Actor.system(), month=LAST)
    (statement,) = [s for s in report.written if s.team_id == team_a.pk]
    assert statement.total == round_money(exact_cost(row.price_seconds), "USD") == Decimal("3.75")
    assert endpoint.pk in {line.endpoint_id for line in statement.lines.all()}


# --- charts -------------------------------------------------------------------------------------
def test_the_nine_costliest_teams_have_their_own_bars_and_the_rest_are_summed():
    months = [OLDER, LAST, THIS]
    rows = [
        MonthCost(team_id=t, month=m, currency="USD", cost=Decimal(t * 10 + i), idle_cost=Decimal(0))
        for t in range(1, 13)
        for i, m in enumerate(months)
    ] + [MonthCost(team_id=99, month=LAST, currency="EUR", cost=Decimal(10**6), idle_cost=Decimal(0))]
    names = {t: f"team {t:02d}" for t in [*range(1, 13), 99]}
    chart = cost_charts.team_month_bars(
        cost_charts.summarise(rows, "USD", names),
        months=months,
        team_names=names,
        table=lambda: cost_charts.month_table(rows, months=months, team_names=names, currency="USD"),
    )
    assert_valid_figure(chart)
    assert [trace["name"] for trace in chart.data] == [f"team {t:02d}" for t in range(12, 3, -1)] + ["Other teams (3)"]
    assert chart.data[-1]["y"] == [60.0, 63.0, 66.0]  # teams 1-3: 10+20+30, +1 each month, ...
    assert chart.data[0]["y"] == [120.0, 121.0, 122.0]
    assert len(chart.rows) == 12 * 3  # every team x month, EUR left out
    assert "team 99" not in {row[0] for row in chart.rows}


def test_the_month_summary_in_sql_equals_the_one_from_every_row(team_a, team_b):
    names = {}
    for i in range(12):
        team = TeamFactory(slug=f"s{i:02d}")
        names[team.pk] = team.name
        endpoint = endpoint_for(team, "chat")
        for j, month in enumerate((OLDER, LAST, THIS)):
            day_row(endpoint, month, gpu=3600 * (i + 1) * (j + 1), rate="1.0001", currency="EUR" if i == 5 else "USD")
    refresh_team_months()
    months = [OLDER, LAST, THIS]
    rows = monthly.month_costs(months)
    totals = {(t, c): total for t, c, total, _ in monthly.team_totals(months, LAST)}
    expected = cost_charts.summarise(rows, "USD", names)
    assert {t: v for (t, c), v in totals.items() if c == "USD"} == expected.totals
    top = cost_charts.top_teams(expected.totals, names)
    series = {(t, m): v for m, c, t, v in monthly.month_series(months, top) if c == "USD"}
    assert series == expected.series
    assert len([t for t, _ in series if t is None]) == 0 or len(top) == 9


def test_budget_lines_variance_uses_the_forecast_only_while_the_month_runs():
    running = cost_charts.BudgetLine(1, "a", "A", Decimal(100), "USD", Decimal(40), Decimal(130), {})
    ended = cost_charts.BudgetLine(2, "b", "B", Decimal(100), "USD", Decimal(40), None, {"EUR": Decimal(5)})
    assert (running.variance, running.over, running.percent_used) == (Decimal(-30), True, 40.0)
    assert (ended.variance, ended.over) == (Decimal(60), False)
    chart = cost_charts.budget_chart([running, ended], month=THIS, current=True)
    assert_valid_figure(chart)
    assert chart.data[0]["y"] == [40.0, 40.0] and chart.data[1]["y"] == [90.0, 0.0]


# --- the page -----------------------------------------------------------------------------------
def some_costs(team_a, team_b):
    BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"), currency="USD")
    BudgetFactory(team=team_b, monthly_amount=Decimal("50.00"), currency="EUR")
    a = endpoint_for(team_a, "chat", observed_replicas=2)
    b = endpoint_for(team_b, "chat", state=Endpoint.State.DELETED)
    day_row(a, THIS, gpu=3600 * 100, idle=3600 * 40)  # 250 USD, 100 idle
    day_row(a, LAST, gpu=3600 * 10)  # 25 USD
    day_row(b, THIS, gpu=3600 * 10, rate="2.0000", currency="EUR")  # 20 EUR
    day_row(b, THIS, gpu=3600, rate="7.0000", currency="USD")  # 7 USD: never added to the EUR budget
    refresh_team_months()
    return a, b


def test_budget_actual_forecast_and_variance_per_team_in_the_budget_currency(client_for, finance_user, team_a, team_b):
    some_costs(team_a, team_b)
    response = client_for(finance_user).get(reverse("dashboards:finance"))
    assert response.status_code == 200
    valid(response)
    rows = {row["line"].slug: row for row in response.context["rows"]}
    line_a, line_b = rows["team-a"]["line"], rows["team-b"]["line"]
    assert (line_a.currency, line_a.actual, line_a.other) == ("USD", Fraction(250), {})
    # Forecast: spent + 2 replicas x 1 GPU x 2.50/h for the hours left in the month.
    assert line_a.forecast is not None and line_a.forecast > 250
    assert line_a.variance == 1000 - line_a.forecast
    assert (line_b.currency, line_b.actual, line_b.other) == ("EUR", Fraction(20), {"USD": Fraction(7)})
    assert line_b.forecast == 20  # its endpoint holds no GPUs any more
    assert line_b.variance == 30
    assert rows["team-b"]["other"] == "7.00 USD"
    keys = set(response.context["charts"])
    assert keys == {"teams-usd", "teams-eur", "budget"}
    usd = response.context["charts"]["teams-usd"]
    assert {trace["name"] for trace in usd.data} == {"Team A", "Team B"}
    assert dict(zip(usd.data[0]["x"], usd.data[0]["y"], strict=True))[f"{THIS:%Y-%m}"] == 250.0
    body = response.content.decode()
    assert reverse("dashboards:finance_team", args=["team-a"]) in body

    # A past month: variance against the actual, no forecast.
    response = client_for(finance_user).get(reverse("dashboards:finance"), {"month": f"{LAST:%Y-%m}"})
    rows = {row["line"].slug: row["line"] for row in response.context["rows"]}
    assert (rows["team-a"].actual, rows["team-a"].forecast, rows["team-a"].variance) == (25, None, 975)
    valid(response)


def test_sorting_by_each_column_keeps_the_month(client_for, finance_user, team_a, team_b):
    some_costs(team_a, team_b)
    client = client_for(finance_user)
    url = reverse("dashboards:finance")
    order = {}
    for sort in ("team", "-team", "actual", "-actual", "budget", "-budget", "variance", "-variance", "forecast"):
        response = client.get(url, {"sort": sort, "month": f"{THIS:%Y-%m}"})
        assert response.status_code == 200
        order[sort] = [row["line"].slug for row in response.context["rows"]]
    assert order["team"] == ["team-a", "team-b"] and order["-team"] == ["team-b", "team-a"]
    assert order["actual"] == ["team-b", "team-a"] and order["-actual"] == ["team-a", "team-b"]
    assert order["budget"] == ["team-b", "team-a"]
    assert order["variance"] == ["team-b", "team-a"]  # 30 EUR < ~ (1000 - forecast) USD in raw amounts
    headers = {h["key"]: h for h in response.context["headers"]}
    assert headers["forecast"]["active"] and "month=" in headers["team"]["url"]
    assert "sort=-forecast" in headers["forecast"]["url"]

    response = client.get(url, {"sort": "drop table"})
    assert response.status_code == 200 and response.context["sort"] == "team"
    assert "Unknown sort" in response.content.decode()


def test_month_picker_good_and_bad(client_for, finance_user, team_a, team_b):
    some_costs(team_a, team_b)
    client = client_for(finance_user)
    response = client.get(reverse("dashboards:finance"), {"month": f"{LAST:%Y-%m}"})
    assert response.context["month"] == LAST and not response.context["current"]
    assert 'type="month" name="month"' in response.content.decode()
    months = response.context["charts"]["teams-usd"].data[0]["x"]
    assert len(months) == 12 and months[-1] == f"{LAST:%Y-%m}"

    response = client.get(reverse("dashboards:finance"), {"month": "2026-13"})
    assert response.status_code == 200
    assert response.context["month"] == THIS
    assert "Unknown month" in response.content.decode()


def test_htmx_gets_only_the_body_and_csv_reads_back(client_for, finance_user, team_a, team_b):
    some_costs(team_a, team_b)
    client = client_for(finance_user)
    url = reverse("dashboards:finance")
    full = client.get(url).content.decode()
    partial = client.get(url, {"month": f"{LAST:%Y-%m}"}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" in full and 'id="finance-body"' in full
    assert "<html" not in partial and 'id="finance-body"' not in partial and 'type="month"' not in partial
    assert "Budget against actual" in partial and "data-plot" in partial

    response = client.get(url, {"csv": "teams-usd", "month": f"{THIS:%Y-%m}"})
    assert response["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table[0] == ["team", "month", "currency", "cost"]
    assert len(table) == 1 + 2 * 12  # every team x month
    assert ["Team A", f"{THIS:%Y-%m}", "USD", "250.00"] in table
    assert ["Team B", f"{THIS:%Y-%m}", "USD", "7.00"] in table
    assert client.get(url, {"csv": "nope"}).status_code == 404

    budget = list(csv.reader(io.StringIO(client.get(url, {"csv": "budget"}).content.decode())))
    assert budget[0] == ["team", "currency", "budget", "actual", "forecast", "variance", "percent used"]
    assert budget[1][:4] == ["Team A", "USD", "1000.00", "250.00"] and budget[2][:4] == [
        "Team B",
        "EUR",
        "50.00",
        "20.00",
    ]


def test_statements_of_the_month_with_close_and_export(client_for, finance_user, team_a, team_b):
    some_costs(team_a, team_b)
    client = client_for(finance_user)
    url = reverse("dashboards:finance")
    empty = client.get(url, {"month": f"{LAST:%Y-%m}"}).content.decode()
    assert "No statements for this month yet." in empty
    assert f"{reverse('metering:generate')}?month={LAST:%Y-%m}" in empty

    report = statements_generate(actor=Actor.system(), month=LAST)
    statement_close(actor=Actor.system(), statement=report.written[0])
    response = client.get(url, {"month": f"{LAST:%Y-%m}"})
    body = response.content.decode()
    assert (response.context["open_count"], response.context["closed_count"]) == (1, 1)
    still_open = Statement.objects.get(month=LAST, status=Statement.Status.OPEN)
    assert reverse("metering:close", args=[still_open.pk]) in body
    assert reverse("metering:statement", args=[report.written[0].pk]) in body
    assert f"{reverse('api:chargeback')}?month={LAST:%Y-%m}&amp;format=csv" in body
    # The statement's budget snapshot is the budget of a past month.
    rows = {row["line"].slug: row["line"] for row in response.context["rows"]}
    assert rows["team-a"].budget == 1000


def test_drill_down_team_then_endpoint(client_for, admin_user, team_a, team_b):
    a, _ = some_costs(team_a, team_b)
    client = client_for(admin_user)
    response = client.get(reverse("dashboards:finance_team", args=["team-a"]), {"month": f"{THIS:%Y-%m}"})
    assert response.status_code == 200
    valid(response)
    chart = response.context["charts"]["endpoints-usd"]
    assert chart.rows == [["chat", "USD", "250.00", "150.00", "100.00"]]
    assert [trace["name"] for trace in chart.data] == ["Busy", "Idle"]
    body = response.content.decode()
    assert reverse("dashboards:finance_endpoint", args=[a.pk]) in body
    assert reverse("dashboards:finance") in body  # breadcrumb

    response = client.get(reverse("dashboards:finance_team", args=["team-b"]))
    assert set(response.context["charts"]) == {"endpoints-eur", "endpoints-usd", "months-eur", "months-usd"}
    valid(response)

    response = client.get(reverse("dashboards:finance_endpoint", args=[a.pk]), {"month": f"{THIS:%Y-%m}"})
    assert response.status_code == 200
    valid(response)
    days = response.context["charts"]["days-usd"]
    assert days.rows[0] == [THIS.isoformat(), "USD", "250.00", "150.00", "100.00"]
    body = response.content.decode()
    assert reverse("dashboards:finance_team", args=["team-a"]) in body

    empty = client.get(reverse("dashboards:finance_endpoint", args=[a.pk]), {"month": "2019-01"})
    assert empty.context["charts"]["days-none"].is_empty
    assert "No metered cost" in empty.content.decode()
    assert client.get(reverse("dashboards:finance_team", args=["nope"])).status_code == 404
    assert client.get(reverse("dashboards:finance_endpoint", args=[10**9])).status_code == 404


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("finance_user", 200),
        ("admin_user", 200),
        ("lead_user", 403),
        ("member_user", 403),
        ("other_lead", 403),
    ],
)
def test_finance_pages_are_for_finance_and_admins(request, client_for, who, status, team_a, team_b):
    a, _ = some_costs(team_a, team_b)
    client = client_for(request.getfixturevalue(who))
    for url in (
        reverse("dashboards:finance"),
        reverse("dashboards:finance_team", args=[team_a.slug]),
        reverse("dashboards:finance_endpoint", args=[a.pk]),
    ):
        assert client.get(url).status_code == status, url
        assert client.get(url, {"csv": "budget" if "teams" not in url else "x"}).status_code in (status, 404)


def test_anonymous_is_sent_to_sign_in(client_for, team_a):
    response = client_for(None).get(reverse("dashboards:finance"))
    assert response.status_code == 302 and "login" in response["Location"]


# --- cost per page view -------------------------------------------------------------------------
def many_teams(count: int) -> None:
    for i in range(count):
        team = TeamFactory(slug=f"t{i:03d}")
        BudgetFactory(team=team, monthly_amount=Decimal("100.00"), currency="EUR" if i % 3 == 0 else "USD")
        endpoint = endpoint_for(team, "chat")
        for month in (OLDER, LAST, THIS):
            day_row(endpoint, month + dt.timedelta(days=i % 20), gpu=3600 * (i + 1), idle=60 * i)
    refresh_team_months()
    # Statements of the last month for the statements table.
    for team_id in TeamMonthCost.objects.filter(month=LAST).values_list("team_id", flat=True).distinct():
        Statement.objects.create(team_id=team_id, month=LAST, currency="USD", time_zone="UTC", generated_at=CREATED)


# Every signed-in page: session, user, memberships, and the session saved again (savepoint, update, release): 6.
# Finance: + teams with budgets, costs per team over the months and in the month, the top teams' and the others'
# cost per month, statements; for the running month + endpoints holding GPUs (summed per
# team and GPU type) and their prices.
FINANCE_QUERIES = {"current": 12, "past": 10}
# Team: + team, its endpoints, their costs, its months; + burn x2 (running month) or its statement (past month).
TEAM_QUERIES = {"current": 12, "past": 11}
ENDPOINT_QUERIES = 8  # + the endpoint, its days


@pytest.mark.parametrize("teams", [2, 20])
def test_query_count_does_not_grow_with_teams(teams, client_for, finance_user, django_assert_num_queries, settings):
    many_teams(teams)
    client = client_for(finance_user)
    client.get(reverse("dashboards:finance"))  # warm caches (content types, site settings)
    with django_assert_num_queries(FINANCE_QUERIES["current"]):
        response = client.get(reverse("dashboards:finance"))
    assert len(response.context["charts"]["teams-usd"].rows) == 12 * teams  # every team x month
    valid(response)
    with django_assert_num_queries(FINANCE_QUERIES["past"]):
        response = client.get(reverse("dashboards:finance"), {"month": f"{LAST:%Y-%m}", "sort": "-variance"})
    assert response.context["statement_count"] == teams
    valid(response)
    with django_assert_num_queries(TEAM_QUERIES["current"]):
        valid(client.get(reverse("dashboards:finance_team", args=["t001"])))
    with django_assert_num_queries(TEAM_QUERIES["past"]):
        valid(client.get(reverse("dashboards:finance_team", args=["t001"]), {"month": f"{LAST:%Y-%m}"}))
    endpoint = Endpoint.objects.filter(team__slug="t001").get()
    with django_assert_num_queries(ENDPOINT_QUERIES):
        valid(client.get(reverse("dashboards:finance_endpoint", args=[endpoint.pk])))


def test_hourly_burn_summed_in_the_database_follows_the_accrual_rule(team_a, team_b):
    from django.utils import timezone

    from apps.metering import selectors
    from apps.metering.accrual import HOLDING, PriceBook, replicas_for_cost

    endpoint_for(team_a, "one", observed_replicas=3, gpus_per_replica=2)
    endpoint_for(team_a, "two", observed_replicas=0, min_replicas=2, max_replicas=4)
    endpoint_for(team_b, "gone", state=Endpoint.State.DELETED)
    endpoint_for(team_b, "free", price=None)
    now = timezone.now()
    mine = selectors.hourly_burn(None, now=now)
    # The same sum, endpoint by endpoint, with the rule accrual bills by (replicas_for_cost).
    holding = list(Endpoint.objects.filter(state__in=HOLDING))
    prices = PriceBook([e.gpu_type_id for e in holding])
    expected: dict[int, dict[str, Fraction]] = {}
    for e in holding:
        price = prices.at(e.gpu_type_id, now)
        if price is not None:
            team = expected.setdefault(e.team_id, {})
            team[price[1]] = (
                team.get(price[1], Fraction(0)) + Fraction(price[0]) * replicas_for_cost(e) * e.gpus_per_replica
            )
    assert mine == expected
    assert selectors.hourly_burn([team_a.pk, team_b.pk], now=now) == mine
    assert mine[team_a.pk] == {"USD": Fraction(5, 2) * (3 * 2 + 2)}  # 6 GPUs + 2 GPUs at 2.50/h
