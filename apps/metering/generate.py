"""Synthetic metering data for CI, demos and benchmarks (`manage.py metering_generate`).

It goes through the real code wherever that is practical: GPU time is accrued by `accrual.accrue_minutes` and
rolled up by `rollup`, statements are made and closed by the services. What is synthetic is the traffic (tokens,
requests, latency buckets) and the replica counts, which change from day to day.

Scenario (minute resolution, the default): a window across the boundary between the month before `month` (P) and
`month` (M), with a price change in the middle of an hour. With `--statements`: P's statements are generated, half
of them closed, then GPU minutes of P arrive late (as after a worker outage) and M's statements are generated, so
that M carries adjustment lines for the closed statements of P. `metering_check` must then pass for both months.

Hour resolution (benchmarks): hourly rows for the whole of `month` straight away (with the price change splitting
its hour), then the real daily rollup.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random  # synthetic traffic, not security
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from apps.accounts.models import User
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.endpoints.models import Endpoint
from apps.inventory.models import Cluster, GpuPrice, GpuType
from apps.teams.models import Budget, Team

from . import selectors, services
from .accrual import PriceBook, accrue_minutes
from .ingest import USAGE_FIELDS, floor_hour, layout_ids
from .models import Statement, UsageHour, UsageMinute
from .rollup import rollup, rollup_day

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
E2E_BOUNDS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0)
GPUS = [  # sku, hourly price, currency, price after the mid-month change (None: no change)
    ("H100-80GB", Decimal("2.5000"), "USD", Decimal("2.7300")),
    ("L4-24GB", Decimal("0.7100"), "USD", None),
    ("A100-80GB-EU", Decimal("1.9000"), "EUR", Decimal("1.8500")),
]


@dataclass
class Generated:
    month: dt.date
    previous: dt.date
    teams: list[Team] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    minute_rows: int = 0
    hour_rows: int = 0
    statements: dict[str, int] = field(default_factory=dict)


def _setup(*, prefix: str, teams: int, endpoints: int, month: dt.date, rng: random.Random) -> Generated:
    if Team.objects.filter(slug__startswith=f"{prefix}-").exists():
        raise ValueError(f"teams named {prefix}-* exist already: use a fresh database or another --prefix")
    previous = selectors.previous_month(month)
    out = Generated(month=month, previous=previous)
    requester = User.objects.create(username=f"{prefix}-requester", email=f"{prefix}-requester@example.com")
    start_p, _ = selectors.month_bounds(previous)
    change_at = selectors.month_bounds(month)[0] + dt.timedelta(days=9, hours=13, minutes=37)
    boundary = selectors.month_bounds(month)[0]
    gpu_types = []
    for sku, price, currency, later in GPUS:
        gpu = GpuType.objects.create(sku=f"{prefix}-{sku}", memory_gib=80)
        GpuPrice.objects.create(
            gpu_type=gpu, hourly_price=price, currency=currency, effective_from=start_p - HOUR * 24 * 40
        )
        if later is not None:
            # One change inside the boundary window (mid-hour), one in the middle of the month.
            GpuPrice.objects.create(
                gpu_type=gpu,
                hourly_price=later,
                currency=currency,
                effective_from=boundary + dt.timedelta(hours=7, minutes=23),
            )
            GpuPrice.objects.create(
                gpu_type=gpu, hourly_price=later + Decimal("0.0100"), currency=currency, effective_from=change_at
            )
        gpu_types.append(gpu)
    cluster = Cluster.objects.create(name=f"{prefix}-cluster", runtime=Cluster.Runtime.RAY)
    model = CatalogModel.objects.create(
        name=f"{prefix}-model",
        source="example-org/model",
        parameter_count=8_000_000_000,
        context_length=8192,
        num_layers=32,
        hidden_size=4096,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
    )
    for i in range(teams):
        team = Team.objects.create(slug=f"{prefix}-team-{i}", name=f"Generated team {i}", cost_center=f"CC-{9000 + i}")
        if i % 3 != 2:
            Budget.objects.create(
                team=team,
                monthly_amount=Decimal(rng.choice([500, 2000, 10000, 50000])),
                currency="USD",
                alert_thresholds=[50, 80, 100],
            )
        out.teams.append(team)
    created = start_p - dt.timedelta(days=1)
    rows = []
    for j in range(endpoints):
        gpu = gpu_types[j % len(gpu_types)]
        low = rng.choice([1, 1, 2])
        rows.append(
            Endpoint(
                team=out.teams[j % teams],
                name=f"ep-{j}",
                model=model,
                cluster=cluster,
                gpu_type=gpu,
                gpus_per_replica=rng.choice([1, 2, 4, 8]),
                min_replicas=low,
                max_replicas=low + rng.choice([0, 1, 2]),
                observed_replicas=low,
                max_model_len=4096,
                state=Endpoint.State.READY,
                requested_by=requester,
            )
        )
    Endpoint.objects.bulk_create(rows, batch_size=1000)
    out.endpoints = list(Endpoint.objects.filter(cluster=cluster).select_related("team").order_by("pk"))
    Endpoint.objects.filter(cluster=cluster).update(created_at=created)
    for endpoint in out.endpoints:
        endpoint.created_at = created
    return out


def _traffic(rng: random.Random, layout: int) -> dict[str, Any]:
    """One busy minute of one endpoint."""
    requests = rng.randint(1, 40)
    latencies = [rng.lognormvariate(0, 0.8) for _ in range(requests)]
    buckets = [0.0] * (len(E2E_BOUNDS) + 1)
    for value in latencies:
        index = next((i for i, bound in enumerate(E2E_BOUNDS) if value <= bound), len(E2E_BOUNDS))
        buckets[index] += 1
    stop = rng.randint(0, requests)
    return {
        "requests": requests,
        "requests_by_reason": {k: v for k, v in (("stop", stop), ("length", requests - stop)) if v},
        "prompt_tokens": requests * rng.randint(50, 2000),
        "generation_tokens": requests * rng.randint(10, 500),
        "histograms": {"e2e": [{"l": layout, "b": buckets, "s": sum(latencies), "c": float(requests)}]},
        "running_sum": float(rng.randint(0, 8)),
        "running_max": float(rng.randint(0, 8)),
        "gauge_samples": 4,
        "kv_usage_sum": rng.random() * 4,
        "kv_usage_max": rng.random(),
        "metric_replicas": 1,
        "scrapes": 4,
    }


def _minutes(out: Generated, start: dt.datetime, end: dt.datetime, rng: random.Random, busy: float) -> None:
    layout = layout_ids([E2E_BOUNDS])[E2E_BOUNDS]
    day = start
    while day < end:
        day_end = min(day + dt.timedelta(days=1), end)
        for endpoint in out.endpoints:  # replicas change from day to day
            endpoint.observed_replicas = rng.randint(endpoint.min_replicas, endpoint.max_replicas)
        Endpoint.objects.bulk_update(out.endpoints, ["observed_replicas"], batch_size=1000)
        count = int((day_end - day) / MINUTE)
        minutes = [day + i * MINUTE for i in range(count)]
        with transaction.atomic():
            out.minute_rows += len(accrue_minutes(minutes))
            usage = [
                UsageMinute(endpoint_id=e.pk, team_id=e.team_id, minute=m, **_traffic(rng, layout))
                for e in out.endpoints
                for m in minutes
                if rng.random() < busy
            ]
            UsageMinute.objects.bulk_create(
                usage,
                update_conflicts=True,
                unique_fields=["endpoint", "minute"],
                update_fields=USAGE_FIELDS,
                batch_size=5000,
            )
        day = day_end


def generate_minutes(
    *, teams: int, endpoints: int, month: dt.date, days: int, seed: int, prefix: str, statements: bool
) -> Generated:
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data
    out = _setup(prefix=prefix, teams=teams, endpoints=endpoints, month=month, rng=rng)
    boundary = selectors.month_bounds(month)[0]
    window_start, window_end = boundary - dt.timedelta(days=days), boundary + dt.timedelta(days=days)
    _minutes(out, window_start, window_end, rng, busy=0.6)
    rollup()
    if not statements:
        return out
    system = Actor.system()
    previous = services.statements_generate(actor=system, month=out.previous)
    for statement in previous.written[::2]:
        services.statement_close(actor=system, statement=statement)
    # Minutes of P that arrive late (a worker outage backfilled afterwards): closed statements are now short.
    _minutes(out, window_start - dt.timedelta(minutes=45), window_start, rng, busy=0.3)
    rollup()
    # Finance regenerates the month's open statements; the closed ones are left alone and corrected in M.
    services.statements_generate(actor=system, month=out.previous)
    current = services.statements_generate(actor=system, month=month)
    out.statements = {
        "previous_written": len(previous.written),
        "previous_closed": len(previous.written[::2]),
        "current_written": len(current.written),
        "adjustment_lines": sum(
            s.lines.filter(kind="adjustment").count() for s in Statement.objects.filter(month=month)
        ),
    }
    return out


def generate_hours(*, teams: int, endpoints: int, month: dt.date, seed: int, prefix: str) -> Generated:
    """A whole month of hourly rows (split at price changes), then the real daily rollup."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic data
    out = _setup(prefix=prefix, teams=teams, endpoints=endpoints, month=month, rng=rng)
    layout = layout_ids([E2E_BOUNDS])[E2E_BOUNDS]
    prices = PriceBook([e.gpu_type_id for e in out.endpoints])
    starts = {gpu_id: prices._starts.get(gpu_id, []) for gpu_id in {e.gpu_type_id for e in out.endpoints}}
    start, end = selectors.month_bounds(month)
    hours = []
    hour = start
    while hour < end:
        hours.append(hour)
        hour += HOUR
    batch: list[UsageHour] = []
    for index, hour in enumerate(hours):
        if index % 24 == 0:
            for endpoint in out.endpoints:
                endpoint.observed_replicas = rng.randint(endpoint.min_replicas, endpoint.max_replicas)
        for endpoint in out.endpoints:
            gpus = endpoint.observed_replicas * endpoint.gpus_per_replica
            # Minutes of this hour per price in force (a change inside the hour splits it, at minute granularity).
            cuts = [s for s in starts[endpoint.gpu_type_id] if hour < s < hour + HOUR]
            edges = [hour, *(floor_hour(c) + dt.timedelta(minutes=-(-(c - floor_hour(c)) // MINUTE)) for c in cuts)]
            edges.append(hour + HOUR)
            for left, right in itertools.pairwise(edges):
                minutes = int((right - left) / MINUTE)
                if minutes <= 0:
                    continue
                price = prices.at(endpoint.gpu_type_id, left)
                assert price is not None
                rate, currency = price
                busy = rng.random() < 0.7
                traffic = _traffic(rng, layout) if busy else {}
                seconds = gpus * 60 * minutes
                idle = 0 if busy else seconds
                batch.append(
                    UsageHour(
                        endpoint_id=endpoint.pk,
                        team_id=endpoint.team_id,
                        hour=hour,
                        rate=rate,
                        currency=currency,
                        replicas=endpoint.observed_replicas,
                        gpus=gpus,
                        gpu_seconds=seconds,
                        price_seconds=rate * seconds,
                        idle_gpu_seconds=idle,
                        minutes=minutes,
                        **traffic,
                    )
                )
        if len(batch) >= 20000:
            UsageHour.objects.bulk_create(batch, batch_size=5000)
            out.hour_rows += len(batch)
            batch = []
    UsageHour.objects.bulk_create(batch, batch_size=5000)
    out.hour_rows += len(batch)
    day = month
    while day <= selectors.month_last_day(month):
        rollup_day(day)
        day += dt.timedelta(days=1)
    return out
