"""The team dashboard and the endpoint panel: series values from known usage rows, windows, htmx partials, CSV,
permissions, empty states and constant query counts."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.core.charts import WINDOWS, assert_valid_figure
from apps.endpoints import charts
from apps.endpoints.models import Endpoint
from apps.endpoints.selectors import team_reservations
from apps.metering.models import HistogramLayout, UsageDay, UsageHour, UsageMinute
from apps.metering.rollup import local_day
from apps.metering.selectors import budget_status, percentile
from apps.metering.series import QUANTILES, _quantiles, endpoint_daily_cost, endpoint_series
from apps.metering.tests.factories import metered_endpoint
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2026, 10, 15, 12, 30, tzinfo=dt.UTC)
HOUR = NOW.replace(minute=0)  # the current hour: 24h and 7d windows end at 13:00
BOUNDS = [0.1, 0.2, 0.5, 1.0]


# --- building usage rows -----------------------------------------------------------------------------
@pytest.fixture
def layout() -> HistogramLayout:
    return HistogramLayout.objects.create(bounds=BOUNDS)


def part(layout: HistogramLayout, buckets: list[int]) -> dict[str, Any]:
    """A histogram part: per-bucket counts for BOUNDS then +Inf."""
    return {"l": layout.pk, "b": [float(b) for b in buckets], "s": 0.0, "c": float(sum(buckets))}


def histograms(layout: HistogramLayout, buckets: list[int]) -> dict[str, Any]:
    return {name: [part(layout, buckets)] for name in ("ttft", "itl", "e2e", "queue")}


def usage(endpoint: Endpoint, **values: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "team_id": endpoint.team_id, "currency": "USD", "rate": Decimal("2.5000")} | values


def minute_row(endpoint: Endpoint, minute: dt.datetime, **values: Any) -> UsageMinute:
    return UsageMinute.objects.create(**usage(endpoint, minute=minute, **values))


def hour_row(endpoint: Endpoint, hour: dt.datetime, **values: Any) -> UsageHour:
    return UsageHour.objects.create(**usage(endpoint, hour=hour, **values))


def day_row(endpoint: Endpoint, day: dt.date, **values: Any) -> UsageDay:
    return UsageDay.objects.create(**usage(endpoint, day=day, **values))


def busy_hour(endpoint: Endpoint, hour: dt.datetime, layout: HistogramLayout) -> None:
    """One hour in two rows (a price change at half past): 720 requests, 7200 tokens, known histograms."""
    common = {"minutes": 30, "requests": 360, "prompt_tokens": 1800, "generation_tokens": 1800, "gauge_samples": 30}
    hour_row(
        endpoint,
        hour,
        histograms=histograms(layout, [50, 0, 0, 0, 0]),
        running_sum=60,
        waiting_sum=15,
        kv_usage_sum=15,
        replicas=1,
        metric_replicas=1,
        **common,
    )
    hour_row(
        endpoint,
        hour,
        rate=Decimal("3.0000"),
        histograms=histograms(layout, [0, 40, 10, 0, 0]),
        running_sum=60,
        waiting_sum=15,
        kv_usage_sum=15,
        replicas=2,
        metric_replicas=1,
        **common,
    )


def ready_endpoint(team, name: str = "chat", **kw: Any) -> Endpoint:
    return metered_endpoint(team=team, name=name, sku=f"GPU-{name}", **kw)


def parse_csv(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode())))


# --- series --------------------------------------------------------------------------------------------
def test_hour_series_merges_price_rows_into_one_period_with_known_percentiles_and_rates(team_a, layout):
    endpoint = ready_endpoint(team_a)
    busy_hour(endpoint, HOUR - dt.timedelta(hours=2), layout)
    hour_row(endpoint, HOUR - dt.timedelta(days=2), minutes=60, requests=5)  # outside 24h
    series = endpoint_series(endpoint.pk, "24h", now=NOW)
    assert series.resolution == "hour"
    assert (series.start, series.end) == (
        HOUR + dt.timedelta(hours=1) - dt.timedelta(hours=24),
        HOUR + dt.timedelta(hours=1),
    )
    [point] = series.points
    assert point.start == HOUR - dt.timedelta(hours=2)
    assert point.seconds == 3600
    # Merged buckets [50, 40, 10, 0, 0] of 100: p50 at 0.1, p95 at 0.2 + 0.3 x 5/10, p99 at 0.2 + 0.3 x 9/10.
    for name in ("ttft", "itl", "e2e"):
        assert point.latency[name]["p50"] == pytest.approx(0.1)
        assert point.latency[name]["p95"] == pytest.approx(0.35)
        assert point.latency[name]["p99"] == pytest.approx(0.47)
    assert "queue" not in point.latency
    assert point.request_rate == pytest.approx(0.2)  # 720 requests / 3600 s
    assert point.tokens_per_second == pytest.approx(2.0)  # 7200 tokens / 3600 s
    assert (point.running, point.waiting, point.kv_usage_percent) == (2.0, 0.5, 50.0)
    assert (point.replicas, point.metric_replicas) == (2, 1)
    # The week window reads the same hourly table and sees the older hour too.
    assert len(endpoint_series(endpoint.pk, "7d", now=NOW).points) == 2


def test_windows_read_their_own_resolution(team_a, layout):
    endpoint = ready_endpoint(team_a)
    minute = NOW.replace(second=0) - dt.timedelta(minutes=5)
    minute_row(
        endpoint,
        minute,
        requests=30,
        prompt_tokens=60,
        generation_tokens=60,
        histograms=histograms(layout, [1, 0, 0, 0, 0]),
    )
    minute_row(endpoint, minute - dt.timedelta(hours=2), requests=1)  # outside the hour
    busy_hour(endpoint, HOUR - dt.timedelta(hours=3), layout)
    day_row(endpoint, local_day(NOW), minutes=600, requests=6000)
    day_row(endpoint, local_day(NOW) - dt.timedelta(days=40), minutes=600, requests=1)  # outside 30 days

    hour = endpoint_series(endpoint.pk, "1h", now=NOW)
    assert hour.resolution == "minute"
    assert [(p.start, p.seconds, p.request_rate) for p in hour.points] == [(minute, 60, 0.5)]
    assert hour.points[0].latency["e2e"]["p50"] == pytest.approx(0.05)

    day = endpoint_series(endpoint.pk, "30d", now=NOW)
    assert day.resolution == "day"
    assert [(p.start, p.seconds) for p in day.points] == [(local_day(NOW), 36000)]
    assert day.points[0].request_rate == pytest.approx(6000 / 36000)
    assert day.points[0].latency["ttft"] == {"p50": None, "p95": None, "p99": None}

    assert [p.start for p in endpoint_series(endpoint.pk, "24h", now=NOW).points] == [HOUR - dt.timedelta(hours=3)]


def test_series_is_two_queries_however_many_rows(team_a, layout, django_assert_num_queries):
    endpoint = ready_endpoint(team_a)
    busy_hour(endpoint, HOUR, layout)
    with django_assert_num_queries(2):  # rows, layouts
        endpoint_series(endpoint.pk, "24h", now=NOW)
    for i in range(1, 20):
        busy_hour(endpoint, HOUR - dt.timedelta(hours=i), layout)
    with django_assert_num_queries(2):
        assert len(endpoint_series(endpoint.pk, "24h", now=NOW).points) == 20


def test_daily_cost_splits_idle_from_busy_exactly(team_a):
    endpoint = ready_endpoint(team_a)
    day = dt.date(2026, 10, 14)
    # 24 GPU-hours at 2.50 = 60.00, half of them idle (30.00); plus one hour at 3.00 after a price change, busy.
    day_row(endpoint, day, gpu_seconds=86400, idle_gpu_seconds=43200, price_seconds=Decimal("216000.0000"))
    day_row(endpoint, day, rate=Decimal("3.0000"), gpu_seconds=3600, price_seconds=Decimal("10800.0000"))
    day_row(
        endpoint,
        day - dt.timedelta(days=1),
        rate=Decimal("0.0007"),
        gpu_seconds=7,
        idle_gpu_seconds=7,
        price_seconds=Decimal("0.0049"),
    )
    day_row(endpoint, day + dt.timedelta(days=5), gpu_seconds=3600, price_seconds=Decimal("9000"))  # after end
    costs = endpoint_daily_cost(endpoint.pk, day - dt.timedelta(days=1), day)
    assert [(c.day, c.currency) for c in costs] == [(day - dt.timedelta(days=1), "USD"), (day, "USD")]
    small, big = costs
    assert (big.total, big.idle, big.busy) == (Fraction(63), Fraction(30), Fraction(33))
    assert (small.total, small.idle, small.busy) == (Fraction(49, 36_000_000), Fraction(49, 36_000_000), 0)
    chart = charts.cost_chart(costs, start_day=day - dt.timedelta(days=1), end_day=day)
    assert_valid_figure(chart)
    assert [t["name"] for t in chart.data] == ["busy (USD)", "idle (USD)"]
    assert chart.data[0]["y"] == [0.0, 33.0] and chart.data[1]["y"] == [0.0, 30.0]
    assert chart.layout["barmode"] == "stack"
    assert chart.data[0]["marker"]["color"] != chart.data[1]["marker"]["color"]
    assert "USD" in chart.title


# --- charts ---------------------------------------------------------------------------------------------
def test_every_endpoint_chart_is_valid_with_data_and_empty(team_a, layout):
    endpoint = ready_endpoint(team_a)
    empty = [
        *charts.endpoint_charts(
            endpoint_series(endpoint.pk, "24h", now=NOW), [], start_day=NOW.date(), end_day=NOW.date()
        )
    ]
    for chart in empty:
        assert_valid_figure(chart)
        assert chart.is_empty and chart.empty_message
    assert charts.latency_chart(endpoint_series(endpoint.pk, "24h", now=NOW), "ttft").empty_message == (
        "No traffic yet: send a request from Try it."
    )
    busy_hour(endpoint, HOUR - dt.timedelta(hours=1), layout)
    busy_hour(endpoint, HOUR, layout)
    series = endpoint_series(endpoint.pk, "24h", now=NOW)
    full = charts.endpoint_charts(
        series, endpoint_daily_cost(endpoint.pk, NOW.date(), NOW.date()), start_day=NOW.date(), end_day=NOW.date()
    )
    by_key = {c.key: c for c in full}
    for chart in full:
        assert_valid_figure(chart)
    for key in ("ttft", "itl", "e2e", "throughput", "load", "replicas"):
        assert len(by_key[key].rows) == 2, key
    ttft = by_key["ttft"]
    assert [t["name"] for t in ttft.data] == ["p50", "p95", "p99"]
    assert len({t["line"]["dash"] for t in ttft.data}) == 3  # told apart without colour too
    assert ttft.rows[0][1:] == [pytest.approx(0.1), pytest.approx(0.35), pytest.approx(0.47)]
    assert by_key["throughput"].data[1]["yaxis"] == "y2"
    assert by_key["load"].data[2]["y"] == [50.0, 50.0]
    assert by_key["replicas"].data[0]["line"]["shape"] == "hv"


def test_team_total_charts(team_a, lead_user):
    assert budget_status(team_a) is None
    no_budget = charts.budget_chart(None, team_name="Team A")
    assert_valid_figure(no_budget)
    assert no_budget.is_empty and "no monthly budget" in no_budget.empty_message

    BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"))
    endpoint = ready_endpoint(team_a, gpus_per_replica=2, max_replicas=2)
    today = local_day(timezone.now())
    day_row(endpoint, today, gpu_seconds=3600, price_seconds=Decimal("9000"))  # 2.50 spent
    chart = charts.budget_chart(budget_status(team_a), team_name="Team A")
    assert_valid_figure(chart)
    assert chart.rows[0][:3] == ["spent so far", 2.5, "USD"]
    assert chart.rows[1][1] > 2.5  # the forecast adds the GPUs held until month end
    assert chart.rows[2][:2] == ["budget", 1000.0]
    assert chart.data[1]["y"] == [1000.0, 1000.0] and chart.data[1]["line"]["dash"] == "dash"

    GpuQuotaFactory(team=team_a, gpu_type=endpoint.gpu_type, limit=8)
    gpus = charts.gpu_quota_chart(team_reservations(team=team_a))
    assert_valid_figure(gpus)
    assert gpus.rows == [[endpoint.gpu_type.sku, 4, 8, 4]]
    assert gpus.layout["barmode"] == "group"
    empty = charts.gpu_quota_chart([])
    assert_valid_figure(empty)
    assert empty.is_empty


# --- pages -----------------------------------------------------------------------------------------------
@pytest.fixture
def team_with_traffic(team_a, layout):
    """Two endpoints of team A (the ready one has traffic in the last hours and a day of cost), one deleted."""
    pending = ready_endpoint(team_a, "aaa-pending", state=Endpoint.State.PENDING_APPROVAL)
    ready = ready_endpoint(team_a, "chat")
    ready_endpoint(team_a, "gone", state=Endpoint.State.DELETED)
    now = timezone.now()
    busy_hour(ready, now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1), layout)
    minute_row(
        ready,
        now.replace(second=0, microsecond=0) - dt.timedelta(minutes=3),
        requests=6,
        histograms=histograms(layout, [3, 3, 0, 0, 0]),
        replicas=1,
    )
    day_row(
        ready,
        local_day(now),
        gpu_seconds=7200,
        idle_gpu_seconds=3600,
        price_seconds=Decimal("18000"),
        minutes=120,
        requests=720,
    )
    return {"ready": ready, "pending": pending}


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user", "admin_user"])
def test_team_dashboard_shows_endpoints_totals_and_the_ready_endpoints_panel(
    role, request, client_for, team_with_traffic
):
    response = client_for(request.getfixturevalue(role)).get(reverse("dashboards:team", args=["team-a"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="endpoint-panel"' in html
    assert html.count('name="window"') == 4
    assert "aaa-pending" in html and "gone" not in html
    assert response.context["endpoint"] == team_with_traffic["ready"]  # first ready one, not the first
    assert response.context["window"].key == "24h"
    found = response.context["charts"]
    assert set(found) == {"budget", "gpus", "ttft", "itl", "e2e", "throughput", "load", "replicas", "cost"}
    for chart in found.values():
        assert_valid_figure(chart)
    assert len(found["ttft"].rows) == 1 and found["cost"].rows
    assert 'data-plot="chart-ttft-spec"' in html
    assert f"?endpoint={team_with_traffic['pending'].pk}" in html


def test_set_a_budget_link_only_for_who_may(client_for, lead_user, finance_user, team_with_traffic):
    budget_url = reverse("teams:budget_set", args=["team-a"])
    lead_page = client_for(lead_user).get(reverse("dashboards:team", args=["team-a"])).content.decode()
    assert "Team A has no monthly budget." in lead_page and budget_url not in lead_page
    assert budget_url in client_for(finance_user).get(reverse("dashboards:team", args=["team-a"])).content.decode()


def test_other_teams_and_anonymous_are_refused(client_for, other_lead, team_with_traffic):
    ready = team_with_traffic["ready"]
    assert client_for(other_lead).get(reverse("dashboards:team", args=["team-a"])).status_code == 404
    assert client_for(other_lead).get(reverse("dashboards:endpoint", args=[ready.pk])).status_code == 404
    assert (
        client_for(other_lead).get(reverse("dashboards:endpoint", args=[ready.pk]), {"csv": "cost"}).status_code == 404
    )
    for url in (reverse("dashboards:team", args=["team-a"]), reverse("dashboards:endpoint", args=[ready.pk])):
        response = client_for(None).get(url)
        assert response.status_code == 302 and "login" in response["Location"]


def test_choosing_an_endpoint_and_a_window(client_for, lead_user, team_with_traffic):
    client = client_for(lead_user)
    url = reverse("dashboards:team", args=["team-a"])
    pending = team_with_traffic["pending"]
    response = client.get(url, {"endpoint": pending.pk, "window": "7d"})
    assert response.context["endpoint"] == pending
    assert response.context["charts"]["ttft"].is_empty
    assert "No traffic yet: send a request from Try it." in response.content.decode()

    ready = team_with_traffic["ready"]
    windows = {}
    for key in WINDOWS:
        response = client.get(url, {"endpoint": ready.pk, "window": key})
        assert response.status_code == 200
        windows[key] = response.context["charts"]["ttft"]
        assert re.findall(r'value="(\w+)"\s+checked', response.content.decode()) == [key]
    assert len(windows["1h"].rows) == 1 and windows["1h"].rows[0][0].second == 0  # a minute row
    assert windows["1h"].rows[0][2] != windows["24h"].rows[0][2]  # another table, other values
    assert windows["24h"].columns[0] == "hour (UTC)" and windows["30d"].columns[0] == "day"
    assert windows["30d"].is_empty  # the day row has no histograms


def test_a_bad_window_or_endpoint_shows_a_message_and_the_default(client_for, lead_user, team_with_traffic):
    client = client_for(lead_user)
    response = client.get(reverse("dashboards:team", args=["team-a"]), {"window": "9y", "endpoint": "x"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown window" in html and "No endpoint" in html
    assert response.context["window"].key == "24h"
    assert response.context["endpoint"] == team_with_traffic["ready"]
    response = client.get(reverse("dashboards:endpoint", args=[team_with_traffic["ready"].pk]), {"window": "9y"})
    assert response.status_code == 200 and "Unknown window" in response.content.decode()


def test_htmx_requests_get_only_the_panel(client_for, lead_user, team_with_traffic):
    client = client_for(lead_user)
    ready = team_with_traffic["ready"]
    for url, params, totals in (
        (reverse("dashboards:team", args=["team-a"]), {"endpoint": ready.pk, "window": "1h"}, True),
        (reverse("dashboards:endpoint", args=[ready.pk]), {"window": "1h"}, False),
    ):
        response = client.get(url, params, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        html = response.content.decode()
        assert html.lstrip().startswith('<div id="endpoint-panel"')
        assert "<html" not in html and "<nav" not in html and "Endpoints</h2>" not in html
        assert 'hx-target="#endpoint-panel"' in html and 'hx-push-url="true"' in html
        assert re.findall(r'value="(\w+)"\s+checked', html) == ["1h"]
        # The team page's totals follow out of band, so no figure on the page is left as it was.
        assert ('<section id="team-totals"' in html and 'hx-swap-oob="true"' in html) is totals
        assert ("chart-budget" in html) is totals
    # Without htmx: whole pages, the totals in place (not out of band).
    team_page = client.get(reverse("dashboards:team", args=["team-a"])).content.decode()
    assert "<html" in team_page and '<section id="team-totals"' in team_page and "hx-swap-oob" not in team_page
    page = client.get(reverse("dashboards:endpoint", args=[ready.pk])).content.decode()
    assert "<html" in page and 'id="endpoint-panel"' in page and "team-totals" not in page
    assert 'name="endpoint"' not in page  # in the path already


def test_csv_of_a_chart_reads_back_as_its_rows(client_for, lead_user, team_with_traffic):
    client = client_for(lead_user)
    ready = team_with_traffic["ready"]
    team_url = reverse("dashboards:team", args=["team-a"])
    page = client.get(team_url, {"window": "24h"})
    ttft = page.context["charts"]["ttft"]
    assert "csv=ttft" in ttft.csv_url
    for url, key in (
        (team_url, "ttft"),
        (team_url, "gpus"),
        (team_url, "budget"),
        (reverse("dashboards:endpoint", args=[ready.pk]), "cost"),
    ):
        response = client.get(url, {"window": "24h", "csv": key})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/csv")
        rows = parse_csv(response.content)
        chart = page.context["charts"][key]
        assert rows[0] == list(chart.columns)
        assert rows[1:] == chart.table_rows
    rows = parse_csv(client.get(team_url, {"csv": "ttft"}).content)
    assert [float(v) for v in rows[1][1:]] == [pytest.approx(0.1), pytest.approx(0.35), pytest.approx(0.47)]
    cost = parse_csv(client.get(team_url, {"csv": "cost"}).content)
    assert cost[1][1:5] == ["USD", "2.5", "2.5", "5.0"]  # 2 GPU-hours at 2.50, one of them idle
    assert client.get(team_url, {"csv": "nope"}).status_code == 404


def test_empty_team(client_for, lead_user, team_a):
    response = client_for(lead_user).get(reverse("dashboards:team", args=["team-a"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "No endpoints yet." in html and reverse("endpoints:request") in html
    assert 'id="endpoint-panel"' not in html
    assert response.context["charts"]["gpus"].is_empty
    partial = client_for(lead_user).get(reverse("dashboards:team", args=["team-a"]), HTTP_HX_REQUEST="true")
    assert "No endpoint to chart yet." in partial.content.decode()


# --- query counts -----------------------------------------------------------------------------------------
def grow(team, layout, *, endpoints: int, hours: int, prefix: str = "e") -> Endpoint:
    first = None
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for i in range(endpoints):
        endpoint = ready_endpoint(team, f"{prefix}{i:03d}-{endpoints}")
        first = first or endpoint
        GpuQuotaFactory(team=team, gpu_type=endpoint.gpu_type, limit=4)
        for h in range(hours):
            busy_hour(endpoint, now - dt.timedelta(hours=h), layout)
            day_row(
                endpoint,
                local_day(now) - dt.timedelta(days=h),
                gpu_seconds=3600,
                idle_gpu_seconds=60,
                price_seconds=Decimal("9000"),
                minutes=60,
            )
    return first


@pytest.mark.parametrize("with_budget", [False, True])
def test_team_page_query_count_does_not_grow(
    client_for, lead_user, team_a, layout, django_assert_num_queries, with_budget
):
    if with_budget:
        BudgetFactory(team=team_a)
    client = client_for(lead_user)
    url = reverse("dashboards:team", args=["team-a"])
    client.get(url)  # session, warm caches
    expected = TEAM_PAGE_QUERIES + (BUDGET_QUERIES if with_budget else 0)
    grow(team_a, layout, endpoints=2, hours=2)
    with django_assert_num_queries(expected):
        assert client.get(url).status_code == 200
    grow(team_a, layout, endpoints=20, hours=20)
    with django_assert_num_queries(expected):
        assert client.get(url).status_code == 200
    with django_assert_num_queries(PANEL_QUERIES + (BUDGET_QUERIES if with_budget else 0)):
        assert client.get(url, {"window": "7d"}, HTTP_HX_REQUEST="true").status_code == 200


def test_endpoint_page_query_count_does_not_grow(client_for, lead_user, team_a, layout, django_assert_num_queries):
    client = client_for(lead_user)
    small = grow(team_a, layout, endpoints=1, hours=2)
    big = grow(team_a, layout, endpoints=1, hours=20, prefix="big")
    for endpoint in (small, big):
        with django_assert_num_queries(ENDPOINT_PAGE_QUERIES):
            assert client.get(reverse("dashboards:endpoint", args=[endpoint.pk])).status_code == 200
        with django_assert_num_queries(ENDPOINT_PANEL_QUERIES):
            url = reverse("dashboards:endpoint", args=[endpoint.pk])
            assert client.get(url, {"window": "24h"}, HTTP_HX_REQUEST="true").status_code == 200


# Every request: session, user, memberships (access_for) and the session save (SESSION_SAVE_EVERY_REQUEST: savepoint,
# update, release) = 6. The team page adds: team, endpoints, series rows + layouts, daily cost, budget, quotas,
# reserved per type, tabs = 9. With a budget: month-to-date, endpoints holding GPUs, their prices = 3 more.
TEAM_PAGE_QUERIES = 15
BUDGET_QUERIES = 3
PANEL_QUERIES = 14  # htmx: the same without the tabs
ENDPOINT_PAGE_QUERIES = 11  # endpoint, series rows + layouts, daily cost, tabs
ENDPOINT_PANEL_QUERIES = 10


def test_series_quantiles_agree_with_the_selectors_percentile(layout):
    """The series computes p50/p95/p99 its own faster way; it must give selectors.percentile's answers."""
    import random

    other = HistogramLayout.objects.create(bounds=[0.05, 0.3, 2.0])
    layouts = {layout.pk: BOUNDS, other.pk: [0.05, 0.3, 2.0]}
    rng = random.Random(5)
    cases = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 7], [1, 0, 0, 0, 0], [0, 3, 0, 0, 1]]
    cases += [[rng.choice([0, 0, 1, 5, 100]) for _ in range(5)] for _ in range(200)]
    for buckets in cases:
        parts = [part(layout, buckets)]
        if sum(buckets) % 3 == 0:  # sometimes two layouts (another vLLM version in the period)
            parts.append({"l": other.pk, "b": [1.0, 2.0, 0.0, 4.0], "s": 0.0, "c": 7.0})
        got = _quantiles(parts, layouts)
        for label, q in QUANTILES.items():
            want = percentile({"e2e": parts}, "e2e", q, layouts)
            assert got[label] == (pytest.approx(want) if want is not None else None), (buckets, label)


def test_a_deleted_endpoint_keeps_its_page_but_leaves_the_team_list(client_for, member_user, team_a, layout):
    gone = ready_endpoint(team_a, "gone", state=Endpoint.State.DELETED)
    busy_hour(gone, timezone.now().replace(minute=0, second=0, microsecond=0), layout)
    client = client_for(member_user)
    page = client.get(reverse("dashboards:endpoint", args=[gone.pk]))
    assert page.status_code == 200 and len(page.context["charts"]["e2e"].rows) == 1
    assert "Try it" not in page.content.decode()  # only a ready endpoint takes prompts
    team = client.get(reverse("dashboards:team", args=["team-a"]), {"endpoint": gone.pk})
    assert team.context["endpoint"] is None and "No endpoint" in team.content.decode()
