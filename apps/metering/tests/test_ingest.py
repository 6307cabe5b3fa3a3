"""Scrapes become per-minute usage: deltas, counter resets, gaps, several replicas, unreachable targets."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.metering.ingest import ingest, scrape_cluster
from apps.metering.models import DirtyHour, ScrapeState, ScrapeTarget, UsageMinute
from apps.metering.scrape import parse_text
from apps.metering.selectors import layouts_for, percentile

from .factories import metered_endpoint
from .helpers import FIXTURES, Replica, at, exposition

pytestmark = pytest.mark.django_db


def book(endpoint, replicas, when, *, source="http://n1/metrics", unreachable=()):
    return ingest(
        endpoints=[endpoint],
        samples=parse_text(exposition(replicas), source=source),
        at=when,
        unreachable=unreachable,
    )


def minute_row(endpoint, when):
    return UsageMinute.objects.get(endpoint=endpoint, minute=when.replace(second=0))


def totals(endpoint):
    rows = UsageMinute.objects.filter(endpoint=endpoint)
    return (
        sum(r.prompt_tokens for r in rows),
        sum(r.generation_tokens for r in rows),
        sum(r.requests for r in rows),
    )


def test_a_new_replica_counts_in_full_and_then_only_its_deltas(team_a):
    endpoint = metered_endpoint(team=team_a)
    replica = Replica(endpoint.served_model_id)
    replica.serve(prompt=100, generation=10, reason="stop")
    replica.serve(prompt=50, generation=5)
    book(endpoint, [replica], at(0, 5))
    row = minute_row(endpoint, at(0))
    assert (row.prompt_tokens, row.generation_tokens, row.requests) == (150, 15, 2)
    assert row.requests_by_reason == {"stop": 1, "length": 1}
    replica.serve(prompt=7, generation=3)
    book(endpoint, [replica], at(0, 20))  # same minute: the row holds the minute's total
    row.refresh_from_db()
    assert (row.prompt_tokens, row.generation_tokens, row.requests, row.scrapes) == (157, 18, 3, 2)
    replica.serve(prompt=1, generation=1, reason="abort")
    book(endpoint, [replica], at(1, 5))
    row = minute_row(endpoint, at(1))
    assert (row.prompt_tokens, row.generation_tokens, row.requests) == (1, 1, 1)
    assert row.requests_by_reason == {"abort": 1}
    assert totals(endpoint) == (158, 19, 4)
    assert DirtyHour.objects.filter(hour=at(0).replace(minute=0)).exists()


def test_real_vllm_scrapes_give_exactly_the_clients_token_counts(team_a):
    import json

    endpoint = metered_endpoint(team=team_a)
    usage = json.loads((FIXTURES / "vllm-0.32-usage.json").read_text())
    name = f'model_name="{endpoint.served_model_id}"'
    before = (FIXTURES / "vllm-0.32-before.prom").read_text().replace('model_name="tiny"', name)
    after = (FIXTURES / "vllm-0.32-after.prom").read_text().replace('model_name="tiny"', name)
    ingest(endpoints=[endpoint], samples=parse_text(before, source="s"), at=at(0, 10))
    ingest(endpoints=[endpoint], samples=parse_text(after, source="s"), at=at(1, 10))
    row = minute_row(endpoint, at(1))
    assert row.prompt_tokens == usage["totals"]["prompt_tokens"]
    assert row.generation_tokens == usage["totals"]["completion_tokens"]
    assert row.requests == usage["totals"]["requests"]
    assert sum(row.histograms["e2e"][0]["b"]) == 24
    layouts = layouts_for([row.histograms])
    client = sorted(r["client_e2e_seconds"] for r in usage["requests"])
    p50 = percentile(row.histograms, "e2e", 0.5, layouts)
    # All 24 took under 0.3 s, the first e2e bucket: p50 interpolates inside it.
    assert p50 is not None and 0 < p50 <= 0.3 and client[11] <= 0.3
    assert minute_row(endpoint, at(0)).prompt_tokens == 0


def test_a_restarted_replica_is_a_reset_not_a_negative_delta(team_a):
    endpoint = metered_endpoint(team=team_a)
    replica = Replica(endpoint.served_model_id, created=1000.0)
    replica.serve(prompt=500, generation=50)
    book(endpoint, [replica], at(0, 5))
    # Restart: _created changes; it serves a request of 40 prompt tokens, still below the old 500.
    replica.restart(at=2000.0)
    replica.serve(prompt=40, generation=4)
    book(endpoint, [replica], at(1, 5))
    assert minute_row(endpoint, at(1)).prompt_tokens == 40
    # A restart that has already served more than before is still seen through _created.
    replica.restart(at=3000.0)
    for _ in range(20):
        replica.serve(prompt=40, generation=4)
    book(endpoint, [replica], at(2, 5))
    assert minute_row(endpoint, at(2)).prompt_tokens == 800
    assert totals(endpoint) == (500 + 40 + 800, 50 + 4 + 80, 22)


def test_ray_counters_without_created_reset_when_they_go_down(team_a):
    endpoint = metered_endpoint(team=team_a)
    replica = Replica(endpoint.served_model_id, ray_replica="abc123")
    replica.serve(prompt=90, generation=9)
    book(endpoint, [replica], at(0, 5))
    replica.restart(at=0)
    replica.serve(prompt=30, generation=3)
    book(endpoint, [replica], at(1, 5))
    assert minute_row(endpoint, at(1)).prompt_tokens == 30
    assert totals(endpoint) == (120, 12, 2)


def test_missed_scrapes_lose_nothing(team_a):
    endpoint = metered_endpoint(team=team_a)
    replica = Replica(endpoint.served_model_id)
    book(endpoint, [replica], at(0, 5))
    for _ in range(30):  # ten minutes of traffic nobody scraped
        replica.serve(prompt=10, generation=2)
    book(endpoint, [replica], at(10, 5))
    assert minute_row(endpoint, at(10)).prompt_tokens == 300
    assert totals(endpoint) == (300, 60, 30)
    assert not UsageMinute.objects.filter(endpoint=endpoint, minute=at(5)).exists()


def test_replicas_come_and_go(team_a):
    endpoint = metered_endpoint(team=team_a)
    one = Replica(endpoint.served_model_id, engine="0")
    two = Replica(endpoint.served_model_id, engine="1")
    one.serve(prompt=10, generation=1)
    book(endpoint, [one], at(0, 5))
    two.serve(prompt=20, generation=2)  # scaled up: the new replica already served a request
    one.serve(prompt=10, generation=1)
    book(endpoint, [one, two], at(1, 5))
    assert minute_row(endpoint, at(1)).prompt_tokens == 30
    assert minute_row(endpoint, at(1)).metric_replicas == 2
    book(endpoint, [one], at(2, 5))  # two is gone from the scrape (scaled down or target down)
    two.serve(prompt=20, generation=2)
    book(endpoint, [one, two], at(3, 5))  # back with more: only what it did meanwhile counts
    assert minute_row(endpoint, at(3)).prompt_tokens == 20
    assert totals(endpoint) == (60, 6, 4)


def test_gauges_sum_over_replicas_and_average_over_scrapes(team_a):
    endpoint = metered_endpoint(team=team_a)
    one = Replica(endpoint.served_model_id, engine="0", running=3, waiting=1, kv=0.5)
    two = Replica(endpoint.served_model_id, engine="1", running=1, waiting=0, kv=0.1)
    book(endpoint, [one, two], at(0, 5))
    one.running, two.running = 0, 0
    book(endpoint, [one, two], at(0, 35))
    row = minute_row(endpoint, at(0))
    assert row.gauge_samples == 2
    assert row.running_sum == 4 and row.running_max == 4
    assert row.waiting_sum == 2
    assert row.kv_usage_sum == pytest.approx(0.6)
    assert row.kv_usage_max == pytest.approx(0.3)


def test_an_older_scrape_arriving_late_is_not_booked(team_a):
    endpoint = metered_endpoint(team=team_a)
    replica = Replica(endpoint.served_model_id)
    replica.serve(prompt=10, generation=1)
    book(endpoint, [replica], at(0, 30))
    report = book(endpoint, [replica], at(0, 15))
    assert report.skipped_stale == 1
    assert totals(endpoint) == (10, 1, 1)


def test_scrape_cluster_fetches_each_target_once_and_survives_one_failing(team_a, metrics_server):
    endpoint = metered_endpoint(team=team_a)
    other = metered_endpoint(team=team_a, name="other", cluster=endpoint.cluster)
    a = Replica(endpoint.served_model_id, ray_replica="r1")
    b = Replica(endpoint.served_model_id, ray_replica="r2")
    c = Replica(other.served_model_id, ray_replica="r3")
    a.serve(prompt=10, generation=1)
    b.serve(prompt=20, generation=2)
    c.serve(prompt=40, generation=4)
    metrics_server.pages["/n1"] = exposition([a, c])
    metrics_server.pages["/n2"] = exposition([b])
    cluster = endpoint.cluster
    cluster.metrics_urls = f"{metrics_server.url('/n1')}\n{metrics_server.url('/n2')}\n"
    cluster.save()
    report = scrape_cluster(cluster_id=cluster.pk)
    assert report.failed == []
    assert totals(endpoint)[0] == 30 and totals(other)[0] == 40
    assert metrics_server.hits == {"/n1": 1, "/n2": 1}
    # Node 2 breaks; its replica keeps serving. Nothing of it is booked until it answers again, then all of it.
    metrics_server.status["/n2"] = 503
    b.serve(prompt=20, generation=2)
    a.serve(prompt=10, generation=1)
    metrics_server.pages["/n1"] = exposition([a, c])
    metrics_server.pages["/n2"] = exposition([b])
    report = scrape_cluster(cluster_id=cluster.pk)
    assert report.failed == [metrics_server.url("/n2")]
    assert totals(endpoint)[0] == 40
    target = ScrapeTarget.objects.get(url=metrics_server.url("/n2"))
    assert "503" in target.last_error
    del metrics_server.status["/n2"]
    scrape_cluster(cluster_id=cluster.pk)
    assert totals(endpoint)[0] == 60
    assert ScrapeTarget.objects.get(url=metrics_server.url("/n2")).last_error == ""


def test_scrape_cluster_with_nothing_answering_books_nothing(team_a):
    endpoint = metered_endpoint(team=team_a, metrics_urls="http://127.0.0.1:9/metrics")
    report = scrape_cluster(cluster_id=endpoint.cluster_id)
    assert report.failed and "connect" in report.message
    assert not UsageMinute.objects.exists()
    assert not ScrapeState.objects.filter(scraped_at__isnull=False).exists()


def test_endpoints_that_do_not_serve_are_not_scraped(team_a, metrics_server):
    endpoint = metered_endpoint(team=team_a, state="failed", metrics_urls=metrics_server.url("/m"))
    assert scrape_cluster(cluster_id=endpoint.cluster_id).endpoints == 0
    assert metrics_server.hits == {}


def test_histogram_deltas_are_per_minute(team_a):
    endpoint = metered_endpoint(team=team_a)
    replica = Replica(endpoint.served_model_id)
    replica.serve(prompt=1, generation=1, e2e=0.2)
    book(endpoint, [replica], at(0, 5))
    replica.serve(prompt=1, generation=1, e2e=0.9)
    replica.serve(prompt=1, generation=1, e2e=0.95)
    book(endpoint, [replica], at(1, 5))
    row = minute_row(endpoint, at(1))
    layouts = layouts_for([row.histograms])
    # Only the two new requests, both in (0.8, 1.0].
    assert 0.8 < percentile(row.histograms, "e2e", 0.5, layouts) <= 1.0
    assert row.histograms["e2e"][0]["c"] == 2
    assert row.histograms["e2e"][0]["s"] == pytest.approx(1.85)
    assert dt.timedelta(0) <= at(1) - row.minute < dt.timedelta(minutes=1)


def test_several_clusters_are_scraped_together_and_a_dead_one_books_nothing(team_a, metrics_server):
    from apps.metering.ingest import scrape_clusters

    alive = metered_endpoint(team=team_a, name="alive", metrics_urls=metrics_server.url("/a"))
    dead = metered_endpoint(team=team_a, name="dead", metrics_urls="http://127.0.0.1:9/metrics")
    replica = Replica(alive.served_model_id)
    replica.serve(prompt=11, generation=1)
    other = Replica(dead.served_model_id)
    other.serve(prompt=99, generation=9)
    metrics_server.pages["/a"] = exposition([replica, other])  # the dead cluster's model shows up elsewhere
    reports = {r.cluster_id: r for r in scrape_clusters(cluster_ids=[alive.cluster_id, dead.cluster_id])}
    assert reports[alive.cluster_id].failed == []
    assert reports[dead.cluster_id].failed == ["http://127.0.0.1:9/metrics"]
    assert totals(alive)[0] == 11
    assert not UsageMinute.objects.filter(endpoint=dead).exists()  # only its own cluster's targets count for it
    assert ScrapeTarget.objects.filter(cluster_id=dead.cluster_id).get().last_success_at is None
    # Alive again, the dead cluster's endpoint gets only what its own target shows.
    dead.cluster.metrics_urls = metrics_server.url("/d")
    dead.cluster.save()
    mine = Replica(dead.served_model_id, engine="7")
    mine.serve(prompt=5, generation=1)
    metrics_server.pages["/d"] = exposition([mine])
    scrape_clusters(cluster_ids=[alive.cluster_id, dead.cluster_id])
    assert totals(dead)[0] == 5
