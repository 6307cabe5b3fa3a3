"""GPU time accrues per minute at the price of the moment; minutes roll up into hours (UTC) and statement-zone days."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest

from apps.endpoints.models import Endpoint
from apps.inventory.models import GpuPrice
from apps.metering.accrual import accrue, accrue_minutes
from apps.metering.ingest import ingest
from apps.metering.models import Cursor, DirtyHour, UsageDay, UsageHour, UsageMinute
from apps.metering.money import exact_cost
from apps.metering.rollup import day_bounds, prune, rollup
from apps.metering.scrape import parse_text

from .factories import metered_endpoint
from .helpers import Replica, at, exposition

pytestmark = pytest.mark.django_db
CREATED = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def minutes(first: dt.datetime, count: int) -> list[dt.datetime]:
    return [first + dt.timedelta(minutes=i) for i in range(count)]


def test_each_closed_minute_accrues_replicas_times_gpus_once(team_a):
    endpoint = metered_endpoint(
        team=team_a, gpus_per_replica=4, max_replicas=3, observed_replicas=2, created_at=CREATED
    )
    accrue(now=at(10, 30))  # first run: the last closed minute only
    assert list(UsageMinute.objects.values_list("minute", "gpus", "gpu_seconds", "rate")) == [
        (at(9), 8, 480, Decimal("2.5000"))
    ]
    report = accrue(now=at(13, 10))
    assert (report.first, report.last, report.minutes) == (at(10), at(12), 3)
    accrue(now=at(13, 50))  # same minute again: nothing new
    assert UsageMinute.objects.filter(endpoint=endpoint).count() == 4
    assert Cursor.objects.get(name="accrual").position == at(12)


def test_provisioning_before_any_replica_is_observed_uses_the_minimum(team_a):
    metered_endpoint(
        team=team_a,
        state=Endpoint.State.PROVISIONING,
        observed_replicas=0,
        min_replicas=2,
        max_replicas=4,
        gpus_per_replica=2,
        created_at=CREATED,
    )
    accrue_minutes([at(0)])
    assert UsageMinute.objects.get().gpus == 4


def test_endpoints_that_hold_no_gpus_accrue_nothing(team_a):
    for state in ("pending_approval", "approved", "failed", "rejected"):
        metered_endpoint(team=team_a, name=state.replace("_", "-"), state=state, created_at=CREATED)
    accrue_minutes(minutes(at(0), 5))
    assert not UsageMinute.objects.exists()


def test_a_deleted_endpoint_accrues_the_minutes_that_started_before_deletion(team_a):
    endpoint = metered_endpoint(team=team_a, state=Endpoint.State.DELETED, observed_replicas=0, created_at=CREATED)
    Endpoint.objects.filter(pk=endpoint.pk).update(deleted_at=at(5, 30))
    accrue_minutes(minutes(at(0), 10))
    assert list(UsageMinute.objects.order_by("minute").values_list("minute", flat=True)) == minutes(at(0), 6)


def test_no_minute_before_the_endpoint_existed(team_a):
    metered_endpoint(team=team_a, created_at=at(3, 20))
    accrue_minutes(minutes(at(0), 6))
    assert UsageMinute.objects.order_by("minute").first().minute == at(3)


def test_backfill_after_downtime_is_bounded(team_a, settings):
    settings.PARETO_METERING_BACKFILL_MINUTES = 30
    metered_endpoint(team=team_a, created_at=CREATED)
    accrue(now=at(0, 10))
    accrue(now=at(0, 10, hour=14))  # two hours later
    assert UsageMinute.objects.count() == 1 + 30


def test_price_change_mid_hour_splits_the_hour(team_a):
    endpoint = metered_endpoint(team=team_a, gpus_per_replica=2, created_at=CREATED)
    # A new price from 12:30:30: minute 12:30 started before it, so the old price covers it.
    GpuPrice.objects.create(gpu_type=endpoint.gpu_type, hourly_price=Decimal("3.1000"), effective_from=at(30, 30))
    accrue_minutes(minutes(at(0), 60))
    rollup()
    rows = {row.rate: row for row in UsageHour.objects.filter(endpoint=endpoint)}
    assert set(rows) == {Decimal("2.5000"), Decimal("3.1000")}
    assert rows[Decimal("2.5000")].minutes == 31 and rows[Decimal("3.1000")].minutes == 29
    cost = sum((exact_cost(row.price_seconds) for row in rows.values()), Fraction(0))
    assert cost == Fraction(2) * (Fraction("2.5") * 31 + Fraction("3.1") * 29) / 60
    assert not DirtyHour.objects.exists()
    (day,) = {row.day for row in UsageDay.objects.all()}
    assert day == dt.date(2026, 10, 15)
    assert sum(exact_cost(d.price_seconds) for d in UsageDay.objects.all()) == cost


def test_idle_minutes_cost_the_same_and_are_shown_apart(team_a):
    endpoint = metered_endpoint(team=team_a, created_at=CREATED)
    replica = Replica(endpoint.served_model_id)
    ingest(endpoints=[endpoint], samples=parse_text(exposition([replica]), source="s"), at=at(0, 5))
    replica.serve(prompt=10, generation=1)
    ingest(endpoints=[endpoint], samples=parse_text(exposition([replica]), source="s"), at=at(1, 5))
    replica.running = 1  # a request in flight all of minute 2, none finished
    ingest(endpoints=[endpoint], samples=parse_text(exposition([replica]), source="s"), at=at(2, 5))
    accrue_minutes(minutes(at(0), 4))
    rollup()
    hour = UsageHour.objects.get(endpoint=endpoint)
    assert hour.gpu_seconds == 240
    assert hour.idle_gpu_seconds == 120  # minutes 0 and 3
    assert hour.price_seconds == Decimal("2.5") * 240
    assert (hour.prompt_tokens, hour.requests) == (10, 1)


def test_rollups_follow_the_statement_time_zone(team_a, settings):
    settings.PARETO_STATEMENT_TIME_ZONE = "Europe/Berlin"
    endpoint = metered_endpoint(team=team_a, created_at=CREATED)
    # 21:00-22:59 UTC on Oct 15 is 23:00-00:59 in Berlin (UTC+2): two local days.
    accrue_minutes(minutes(at(0, hour=21), 120))
    rollup()
    days = dict(UsageDay.objects.filter(endpoint=endpoint).values_list("day", "gpu_seconds"))
    assert days == {dt.date(2026, 10, 15): 3600, dt.date(2026, 10, 16): 3600}


def test_the_day_clocks_go_back_has_25_hours(settings):
    settings.PARETO_STATEMENT_TIME_ZONE = "Europe/Berlin"
    start, end = day_bounds(dt.date(2026, 10, 25))
    assert end - start == dt.timedelta(hours=25)
    start, end = day_bounds(dt.date(2026, 3, 29))
    assert end - start == dt.timedelta(hours=23)


def test_rollup_is_idempotent_and_picks_up_late_minutes(team_a):
    endpoint = metered_endpoint(team=team_a, created_at=CREATED)
    accrue_minutes(minutes(at(0), 30))
    rollup()
    rollup()
    assert UsageHour.objects.get(endpoint=endpoint).minutes == 30
    accrue_minutes(minutes(at(30), 30))  # written later: the hour is dirty again
    rollup()
    assert UsageHour.objects.get(endpoint=endpoint).minutes == 60
    assert UsageDay.objects.get(endpoint=endpoint).gpu_seconds == 3600


def test_prune_keeps_rollups_and_unrolled_minutes(team_a, settings):
    settings.PARETO_METERING_MINUTE_RETENTION_DAYS = 14
    metered_endpoint(team=team_a, created_at=CREATED)
    accrue_minutes(minutes(at(0, day=1), 2))
    rollup()
    accrue_minutes(minutes(at(0, day=2), 2))  # not rolled up yet: kept past retention until it is
    deleted = prune(now=at(0, day=20))
    assert deleted == 2
    assert UsageMinute.objects.count() == 2
    assert UsageHour.objects.count() == 1
    rollup()
    prune(now=at(0, day=20))
    assert UsageMinute.objects.count() == 0
    assert UsageHour.objects.count() == 2
