"""`manage.py dashboards_generate`: a small platform with consistent rollups, and it refuses a database in use."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, F, Sum
from django.utils import timezone

from apps.accounts.models import User
from apps.catalog.models import CatalogModel
from apps.dashboards import generate
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.inventory.models import GpuPrice
from apps.metering.models import UsageDay, UsageHour, UsageMinute
from apps.metering.rollup import day_bounds
from apps.teams.models import Budget, GpuQuota, Membership, Team

pytestmark = pytest.mark.django_db(transaction=False)


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("dashboards_generate", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def small() -> str:
    return run("--teams", "3", "--endpoints", "12", "--days", "3")


def test_small_run_makes_the_platform_asked_for(small: str) -> None:
    assert Team.objects.count() == 3
    assert Endpoint.objects.count() == 12
    assert User.objects.filter(is_platform_admin=True).count() == 1
    assert User.objects.filter(is_finance=True).count() == 1
    assert Membership.objects.filter(role=Membership.Role.LEAD).count() == 3
    assert Budget.objects.exists() and GpuQuota.objects.exists()
    assert CatalogModel.objects.filter(quality_score__isnull=True).exists()
    assert CatalogModel.objects.filter(quality_score__isnull=False).exists()
    assert GpuPrice.objects.values("gpu_type").annotate(n=Count("id")).filter(n__gt=1).exists()  # a price change
    assert Operation.objects.exists()
    running = set(UsageHour.objects.values_list("endpoint_id", flat=True).distinct())
    assert running and running <= set(Endpoint.objects.values_list("pk", flat=True))
    # Every endpoint with history has a row per completed hour while it ran, one day row per day at least.
    assert UsageDay.objects.values("endpoint_id").distinct().count() == len(running)
    assert UsageMinute.objects.exists()
    first = UsageDay.objects.order_by("day").values_list("day", flat=True).first()
    last = UsageDay.objects.order_by("-day").values_list("day", flat=True).first()
    assert first is not None and last is not None and (last - first).days == 2
    assert "hour_rows" in small and "day_rows" in small and "timings" in small


def test_the_state_mix_includes_what_the_admin_page_shows() -> None:
    run("--teams", "4", "--endpoints", "80", "--days", "1")
    states = set(Endpoint.objects.values_list("state", flat=True))
    assert {Endpoint.State.READY, Endpoint.State.FAILED, Endpoint.State.PENDING_APPROVAL} <= states
    assert Operation.objects.filter(state=Operation.State.FAILED).exists()
    assert QuotaRequest.objects.filter(state=QuotaRequest.State.PENDING).exists()


def test_day_rows_are_the_sum_of_their_hours(small: str) -> None:
    fields = ["price_seconds", "gpu_seconds", "idle_gpu_seconds", "prompt_tokens", "generation_tokens", "requests"]
    days = list(UsageDay.objects.values("endpoint_id", "day", "rate", *fields))
    assert days
    for row in days:
        start, end = day_bounds(row["day"])
        hours = UsageHour.objects.filter(
            endpoint_id=row["endpoint_id"], hour__gte=start, hour__lt=end, rate=row["rate"]
        ).aggregate(**{name: Sum(name) for name in fields})
        assert {name: row[name] for name in fields} == hours, row


def test_price_seconds_is_rate_times_gpu_seconds(small: str) -> None:
    for model in (UsageHour, UsageDay):
        rows = model.objects.all()
        assert rows.exists()
        assert not rows.exclude(price_seconds=F("rate") * F("gpu_seconds")).exists()
        assert not rows.filter(idle_gpu_seconds__gt=F("gpu_seconds")).exists()
    row = UsageHour.objects.filter(requests__gt=0).first()
    assert row is not None and row.rate is not None
    assert row.price_seconds == row.rate * Decimal(row.gpu_seconds)
    assert {"e2e", "ttft", "itl"} <= set(row.histograms)
    part = row.histograms["e2e"][0]
    assert part["c"] == row.requests and abs(sum(part["b"]) - row.requests) < 0.5


def test_refuses_a_database_with_teams_unless_forced(small: str) -> None:
    with pytest.raises(CommandError, match="--force"):
        run("--teams", "1", "--endpoints", "1", "--days", "1")
    run("--teams", "1", "--endpoints", "1", "--days", "1", "--force", "--prefix", "again-")
    assert Team.objects.count() == 4


def test_extend_adds_older_history_and_leaves_the_rest(small: str) -> None:
    before = UsageDay.objects.order_by("day").values_list("day", flat=True).first()
    assert before is not None
    kept = list(UsageDay.objects.order_by("pk").values_list("pk", "price_seconds"))
    hours = UsageHour.objects.count()
    run("--extend-days", "4", "--extend-hour-days", "2")
    assert (
        list(UsageDay.objects.filter(pk__in=[pk for pk, _ in kept]).order_by("pk").values_list("pk", "price_seconds"))
        == kept
    )
    first = UsageDay.objects.order_by("day").values_list("day", flat=True).first()
    assert first is not None and (before - first).days == 4
    assert UsageHour.objects.count() > hours
    oldest_hour = UsageHour.objects.order_by("hour").values_list("hour", flat=True).first()
    assert oldest_hour is not None and oldest_hour >= day_bounds(first)[0]


def test_catch_up_brings_kept_data_to_now_and_keeps_days_equal_to_hours() -> None:
    start = timezone.now() - dt.timedelta(hours=30)
    generate.generate(teams=2, endpoints=6, days=3, now=start)
    oldest_day = UsageDay.objects.order_by("day").values_list("day", flat=True).first()
    assert oldest_day is not None
    kept = list(UsageDay.objects.filter(day=oldest_day).order_by("pk").values_list("pk", "price_seconds"))
    now = timezone.now()
    generate.catch_up(now=now)
    newest_minute = UsageMinute.objects.order_by("-minute").values_list("minute", flat=True).first()
    assert newest_minute is not None and now - newest_minute < dt.timedelta(minutes=2)
    assert not UsageMinute.objects.filter(minute__lt=now - dt.timedelta(hours=2, minutes=1)).exists()
    newest_hour = UsageHour.objects.order_by("-hour").values_list("hour", flat=True).first()
    assert newest_hour is not None and now - newest_hour < dt.timedelta(hours=2)
    assert list(UsageDay.objects.filter(day=oldest_day).order_by("pk").values_list("pk", "price_seconds")) == kept
    test_day_rows_are_the_sum_of_their_hours("")
