"""The frontier page: frontier math, precomputed summaries, scoping, window picker, CSV and query counts."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.tests.factories import UserFactory
from apps.catalog.charts import FrontierPoint, frontier_chart, frontier_points, mark_frontier
from apps.catalog.tests.factories import CatalogModelFactory
from apps.core.charts import assert_valid_figure
from apps.dashboards.models import EndpointSummary, SummaryRun
from apps.dashboards.summaries import refresh_endpoint_summaries, window_days, window_period
from apps.dashboards.tasks import refresh_summaries
from apps.endpoints.models import Endpoint
from apps.endpoints.tests.factories import EndpointFactory
from apps.metering.histograms import merge_histogram_maps
from apps.metering.models import HistogramLayout, UsageDay, UsageHour
from apps.metering.money import exact_cost
from apps.metering.rollup import local_day
from apps.metering.selectors import endpoint_usage, layouts_for, percentile
from apps.metering.tests.helpers import E2E_BOUNDS, TTFT_BOUNDS
from apps.teams.tests.factories import TeamFactory

NOW = dt.datetime(2026, 10, 15, 12, 30, tzinfo=dt.UTC)
URL = "/dashboards/frontier/"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """The page caches its figure per refresh (run id + time); ids restart with a new test database."""
    cache.clear()


# --- helpers ---------------------------------------------------------------------------------------
def part(bounds: tuple[float, ...], values: list[float]) -> dict[str, Any]:
    layout, _ = HistogramLayout.objects.get_or_create(bounds=list(bounds))
    buckets = [0.0] * (len(bounds) + 1)
    for value in values:
        index = next((i for i, b in enumerate(bounds) if value <= b), len(bounds))
        buckets[index] += 1
    return {"l": layout.pk, "b": buckets, "s": float(sum(values)), "c": float(len(values))}


def usage(
    endpoint: Endpoint,
    *,
    hour: dt.datetime | None = None,
    day: dt.date | None = None,
    tokens: int = 1000,
    price_seconds: str = "9000",
    latencies: tuple[float, ...] = (0.4, 0.9, 1.2),
    currency: str = "USD",
) -> None:
    fields: dict[str, Any] = {
        "endpoint": endpoint,
        "team_id": endpoint.team_id,
        "requests": len(latencies),
        "prompt_tokens": tokens // 2,
        "generation_tokens": tokens - tokens // 2,
        "histograms": {"e2e": [part(E2E_BOUNDS, list(latencies))], "ttft": [part(TTFT_BOUNDS, [0.05])]}
        if latencies
        else {},
        "gpu_seconds": 3600,
        "rate": Decimal("2.5000") if currency else None,
        "currency": currency,
        "price_seconds": Decimal(price_seconds) if currency else Decimal(0),
        "minutes": 60,
    }
    if hour is not None:
        UsageHour.objects.create(hour=hour, **fields)
    if day is not None:
        UsageDay.objects.create(day=day, **fields)


def traffic(endpoint: Endpoint, **kwargs: Any) -> None:
    """An hour and a day of usage inside every window as of NOW."""
    usage(endpoint, hour=NOW.replace(minute=0), day=NOW.date(), **kwargs)


def point(name: str, latency: float, cost: str, currency: str = "USD", score: str | None = "50") -> FrontierPoint:
    return FrontierPoint(
        endpoint_id=hash(name) % 1000,
        endpoint=f"t/{name}",
        team="T",
        model="m",
        score=Decimal(score) if score is not None else None,
        latency=latency,
        cost_per_million=Decimal(cost),
        currency=currency,
        tokens=10,
    )


def on(points: list[FrontierPoint]) -> set[str]:
    return {p.endpoint.split("/")[1] for p in points if p.on_frontier}


def summary_row(**overrides: Any) -> dict[str, Any]:
    row = {
        "endpoint_id": 1,
        "currency": "USD",
        "mixed_currency": False,
        "cost_per_million": Decimal("2.5"),
        "prompt_tokens": 10,
        "generation_tokens": 10,
        "requests": 2,
        "p95_e2e": 1.0,
        "endpoint_name": "chat",
        "team_slug": "team-a",
        "team_name": "Team A",
        "model_name": "llama",
        "quality_score": Decimal("70"),
    }
    return row | overrides


def read_csv(response: Any) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


# --- frontier math ---------------------------------------------------------------------------------
def test_dominated_points_are_off_the_frontier() -> None:
    points = mark_frontier(
        [point("fast-dear", 0.5, "9"), point("slow-cheap", 3.0, "1"), point("mid", 1.0, "4"), point("bad", 2.0, "5")]
    )
    assert on(points) == {"fast-dear", "mid", "slow-cheap"}
    assert [p.endpoint for p in points] == ["t/fast-dear", "t/mid", "t/bad", "t/slow-cheap"]  # by latency


def test_equal_points_both_stay_on_the_frontier_but_a_tie_on_one_axis_does_not() -> None:
    points = mark_frontier(
        [
            point("a", 1.0, "2"),
            point("twin", 1.0, "2"),
            point("same-latency-dearer", 1.0, "3"),
            point("same-cost-slower", 2.0, "2"),
        ]
    )
    assert on(points) == {"a", "twin"}


def test_a_single_point_is_the_frontier() -> None:
    assert on(mark_frontier([point("only", 1.0, "2")])) == {"only"}
    assert mark_frontier([]) == []


def test_currencies_are_never_compared() -> None:
    points = mark_frontier([point("usd", 1.0, "2"), point("eur-dear", 2.0, "50", currency="EUR")])
    assert on(points) == {"usd", "eur-dear"}
    chart = frontier_chart(points, window_label="7 days")
    assert_valid_figure(chart)
    assert {t["name"] for t in chart.data} >= {"Frontier (USD)", "Frontier (EUR)"}


def test_missing_score_gets_a_small_fixed_marker_and_says_no_score() -> None:
    points, notes = frontier_points([summary_row(quality_score=None), summary_row(endpoint_id=2, endpoint_name="b")])
    chart = frontier_chart(points, window_label="7 days")
    assert_valid_figure(chart)
    unscored = next(t for t in chart.data if t["name"] == "No quality score")
    assert unscored["marker"]["size"] == [7]
    assert unscored["customdata"][0][3] == "no score"
    scored = next(t for t in chart.data if t["name"].startswith("Endpoints, sized"))
    assert scored["marker"]["size"] == [24.0]  # 10 + 20 x 70%
    assert scored["customdata"][0][:4] == ["team-a/b", "Team A", "llama", "70"]
    assert "Team: %{customdata[1]}" in scored["hovertemplate"] and "USD" in scored["hovertemplate"]
    assert notes == []


def test_zero_tokens_and_missing_latency_or_price_are_left_out_with_a_note() -> None:
    points, notes = frontier_points(
        [
            summary_row(),
            summary_row(endpoint_id=2, endpoint_name="idle", prompt_tokens=0, generation_tokens=0),
            summary_row(endpoint_id=3, endpoint_name="nolat", p95_e2e=None),
            summary_row(endpoint_id=4, endpoint_name="free", currency="", cost_per_million=None),
            summary_row(endpoint_id=5, endpoint_name="two", currency="", mixed_currency=True, cost_per_million=None),
        ]
    )
    assert [p.endpoint for p in points] == ["team-a/chat"]
    assert len(notes) == 4
    assert "team-a/idle served no tokens in this window" in notes[0]
    assert "team-a/nolat" in notes[1] and "team-a/free" in notes[2] and "team-a/two" in notes[3]


def test_hover_text_escapes_names() -> None:
    points, _ = frontier_points([summary_row(team_name="<b>x</b>")])
    chart = frontier_chart(points, window_label="7 days")
    assert chart.data[0]["customdata"][0][1] == "&lt;b&gt;x&lt;/b&gt;"


# --- summaries -------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_summaries_equal_what_the_selectors_compute_live(team_a, team_b) -> None:
    fast = EndpointFactory(team=team_a, name="fast")
    slow = EndpointFactory(team=team_b, name="slow")
    for days_ago in range(0, 12):
        day = NOW.date() - dt.timedelta(days=days_ago)
        usage(fast, day=day, tokens=1000 + days_ago, price_seconds=f"{900 + days_ago}.5", latencies=(0.2, 0.4))
        usage(slow, day=day, tokens=500, price_seconds="3600", latencies=(4.0, 9.0, 11.0 + days_ago))
    for hours_ago in range(0, 30):
        hour = NOW.replace(minute=0) - dt.timedelta(hours=hours_ago)
        usage(fast, hour=hour, tokens=100 + hours_ago, price_seconds="90.25", latencies=(0.3, 0.6 + hours_ago / 10))

    assert refresh_endpoint_summaries(now=NOW) == 5  # 24h: only `fast` has hourly rows

    for window in ("7d", "30d"):
        first, last = window_days(window, NOW)
        live = {u.endpoint_id: u for u in endpoint_usage(team_ids=None, start_day=first, end_day=last)}
        for summary in EndpointSummary.objects.filter(window=window):
            expected = live[summary.endpoint_id]
            assert summary.cost == expected.costs["USD"]
            assert summary.tokens == expected.tokens
            assert summary.requests == expected.requests
            assert summary.p95_e2e == expected.percentiles["e2e"]["p95"]
            assert summary.p50_e2e == expected.percentiles["e2e"]["p50"]
            assert summary.p95_ttft == expected.percentiles["ttft"]["p95"]
            assert summary.cost_per_million is not None
            assert abs(Fraction(summary.cost_per_million) - expected.cost_per_million("USD")) <= Fraction(1, 10**6)
    # 24 hours: the hourly rows of the last 24 hours, merged the way the team dashboard merges them.
    start, end = window_period("24h", NOW)
    rows = list(UsageHour.objects.filter(endpoint=fast, hour__gte=start, hour__lt=end))
    assert len(rows) == 24
    merged = merge_histogram_maps(r.histograms for r in rows)
    day = EndpointSummary.objects.get(window="24h", endpoint=fast)
    assert day.p95_e2e == percentile(merged, "e2e", 0.95, layouts_for([merged]))
    assert day.cost == sum((exact_cost(r.price_seconds) for r in rows), Fraction(0))
    assert day.tokens == sum(r.prompt_tokens + r.generation_tokens for r in rows)
    assert not EndpointSummary.objects.filter(window="24h", endpoint=slow).exists()  # no hourly rows
    run = SummaryRun.objects.get(window="24h")
    assert (run.start, run.end, run.computed_at, run.endpoints) == (start, end, NOW, 1)


@pytest.mark.django_db
def test_refresh_replaces_rows_skips_deleted_endpoints_and_is_safe_to_run_twice(team_a) -> None:
    now = timezone.now()
    live = EndpointFactory(team=team_a, name="live")
    gone = EndpointFactory(team=team_a, name="gone", state=Endpoint.State.DELETED)
    for endpoint in (live, gone):
        usage(endpoint, hour=now.replace(minute=0, second=0, microsecond=0), day=local_day(now))
    assert refresh_summaries.apply().get() == 3  # the Celery task, as of now
    first = set(EndpointSummary.objects.values_list("endpoint_id", "window"))
    assert refresh_summaries.apply().get() == 3  # and again: the same rows, replaced
    assert set(EndpointSummary.objects.values_list("endpoint_id", "window")) == first
    assert first == {(live.pk, "24h"), (live.pk, "7d"), (live.pk, "30d")}


@pytest.mark.django_db
def test_summary_records_mixed_and_missing_currency(team_a) -> None:
    mixed = EndpointFactory(team=team_a, name="mixed")
    unpriced = EndpointFactory(team=team_a, name="unpriced")
    usage(mixed, day=NOW.date(), currency="USD")
    usage(mixed, day=NOW.date() - dt.timedelta(days=1), currency="EUR")
    usage(unpriced, day=NOW.date(), currency="")
    refresh_endpoint_summaries(now=NOW)
    m = EndpointSummary.objects.get(endpoint=mixed, window="7d")
    u = EndpointSummary.objects.get(endpoint=unpriced, window="7d")
    assert (m.currency, m.mixed_currency, m.cost_per_million) == ("", True, None)
    assert (u.currency, u.mixed_currency, u.cost_per_million) == ("", False, None)


# --- the page --------------------------------------------------------------------------------------
@pytest.fixture
def two_teams(team_a, team_b) -> dict[str, Endpoint]:
    scored = CatalogModelFactory(name="big-model", quality_score=Decimal("80"))
    unscored = CatalogModelFactory(name="plain-model", quality_score=None)
    endpoints = {
        "a-fast": EndpointFactory(team=team_a, name="a-fast", model=scored),
        "a-slow": EndpointFactory(team=team_a, name="a-slow", model=unscored),
        "b-secret": EndpointFactory(team=team_b, name="b-secret", model=scored),
    }
    traffic(endpoints["a-fast"], latencies=(0.3,), price_seconds="36000")
    traffic(endpoints["a-slow"], latencies=(9.0,), price_seconds="3600")
    traffic(endpoints["b-secret"], latencies=(0.2,), price_seconds="360")
    refresh_endpoint_summaries(now=NOW)
    return endpoints


def test_permissions(client_for, two_teams, admin_user, finance_user, lead_user, member_user, other_lead) -> None:
    anonymous = client_for(None).get(URL)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    for user in (admin_user, finance_user, lead_user, member_user, other_lead):
        assert client_for(user).get(URL).status_code == 200
    assert client_for(UserFactory(username="nobody")).get(URL).status_code == 403


def test_lead_sees_only_own_team_in_page_and_csv(client_for, two_teams, lead_user) -> None:
    client = client_for(lead_user)
    response = client.get(URL + "?window=7d")
    chart = response.context["charts"]["frontier"]
    assert_valid_figure(chart)
    assert {row[0] for row in chart.rows} == {"team-a/a-fast", "team-a/a-slow"}
    assert "b-secret" not in response.content.decode()
    rows = read_csv(client.get(URL + "?window=7d&csv=frontier"))
    assert {r["Endpoint"] for r in rows} == {"team-a/a-fast", "team-a/a-slow"}
    for window in ("24h", "30d"):
        assert "b-secret" not in client.get(URL + f"?window={window}&csv=frontier").content.decode()


def test_admin_sees_every_endpoint_with_the_frontier_marked(client_for, two_teams, admin_user) -> None:
    response = client_for(admin_user).get(URL)
    assert response.status_code == 200
    rows = read_csv(client_for(admin_user).get(URL + "?csv=frontier"))
    frontier = {r["Endpoint"]: r["On the frontier"] for r in rows}
    # b-secret: fastest and cheapest, dominates a-fast; a-slow is cheaper than a-fast but b-secret is cheaper still.
    assert frontier == {"team-b/b-secret": "yes", "team-a/a-fast": "no", "team-a/a-slow": "no"}
    by_name = {r["Endpoint"]: r for r in rows}
    assert by_name["team-a/a-slow"]["Quality score"] == ""
    assert by_name["team-b/b-secret"]["Quality score"] == "80.00"
    assert by_name["team-b/b-secret"]["Cost per 1M tokens"] == "100.000000"  # 360/3600 = 0.1 USD per 1,000 tokens
    body = response.content.decode()
    assert "As of" in body and 'data-plot="chart-frontier-spec"' in body
    assert "1 with no quality score" in body


def test_window_picker_good_and_bad(client_for, two_teams, lead_user) -> None:
    client = client_for(lead_user)
    default = client.get(URL)
    assert default.context["window"].key == "7d"
    body = default.content.decode()
    assert 'name="window" value="7d" checked' in body and 'hx-push-url="true"' in body
    assert client.get(URL + "?window=24h").context["window"].key == "24h"
    for bad in ("9y", "1h"):
        response = client.get(URL + f"?window={bad}")
        assert response.status_code == 200
        assert response.context["window"].key == "7d"
        assert "Unknown window" in response.content.decode()


def test_htmx_request_gets_only_the_charts(client_for, two_teams, lead_user) -> None:
    response = client_for(lead_user).get(URL + "?window=30d", HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and "chart-frontier" in body and 'name="window"' not in body
    assert "As of" in body


def test_empty_states(client_for, team_a, lead_user, admin_user) -> None:
    never = client_for(lead_user).get(URL).content.decode()
    assert "never been computed" in never and "has not been computed yet" in never
    idle = EndpointFactory(team=team_a, name="idle")
    usage(idle, day=NOW.date(), hour=NOW.replace(minute=0), tokens=0)
    refresh_endpoint_summaries(now=NOW)
    body = client_for(lead_user).get(URL).content.decode()
    assert "over an hour ago" in body  # NOW is long past
    assert "No traffic yet in this window" in body
    assert "team-a/idle served no tokens in this window" in body
    assert "As of" in body


@pytest.mark.parametrize("cached", [True, False])
def test_query_count_does_not_grow_with_endpoints(client_for, team_a, lead_user, admin_user, settings, cached) -> None:
    if not cached:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}

    def count(user: Any) -> int:
        client = client_for(user)
        client.get(URL)  # warm the session (and the cache)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(URL).status_code == 200
        return len(ctx.captured_queries)

    model = CatalogModelFactory(quality_score=Decimal("60"))
    for i in range(2):
        traffic(EndpointFactory(team=team_a, name=f"e{i}", model=model), latencies=(0.1 * (i + 1),))
    refresh_endpoint_summaries(now=NOW)
    small = {"lead": count(lead_user), "admin": count(admin_user)}
    for i in range(2, 20):
        traffic(EndpointFactory(team=TeamFactory() if i % 2 else team_a, name=f"e{i}"), latencies=(0.1 * i,))
    refresh_endpoint_summaries(now=NOW)
    assert {"lead": count(lead_user), "admin": count(admin_user)} == small
    # Signed-in overhead (user, memberships, session save) + tabs, the window's run and (uncached) its summaries.
    assert small["lead"] <= (8 if cached else 9), small


def test_a_new_refresh_is_drawn_not_the_cached_figure(client_for, team_a, lead_user) -> None:
    endpoint = EndpointFactory(team=team_a, name="grows")
    traffic(endpoint)
    refresh_endpoint_summaries(now=NOW)
    client = client_for(lead_user)
    assert len(client.get(URL).context["charts"]["frontier"].rows) == 1
    traffic(EndpointFactory(team=team_a, name="second"))
    refresh_endpoint_summaries(now=NOW)  # same time, new run
    assert len(client.get(URL).context["charts"]["frontier"].rows) == 2
