"""GPU time: every closed minute, each endpoint that holds GPUs accrues replicas x GPUs per replica x 60 s, priced
with its GPU type's price in force at the start of that minute.

The rules (docs/metering.md):
- An endpoint holds GPUs while it is provisioning, ready, updating or deleting; a deleted endpoint held them in
  every minute that started before `deleted_at`. No minute before the endpoint was created accrues.
- Replicas: `Endpoint.observed_replicas`, which the lifecycle updates from the runtime; while nothing has been
  observed yet (provisioning, or 0 reported), the reservation's minimum, `min_replicas`. GPUs = replicas x
  `gpus_per_replica`.
- Idle minutes cost the same as busy ones (idle is shown separately, computed at rollup).
- Minutes are accrued once, after they close, by a job that runs every minute and remembers the last minute it
  did (`Cursor` "accrual"). After downtime it fills the missed minutes with the state it sees then, up to
  `PARETO_METERING_BACKFILL_MINUTES`; older gaps stay unaccrued (and `metering_check` shows them).
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, NullIf

from apps.endpoints.models import Endpoint
from apps.inventory.models import GpuPrice

from .ingest import floor_hour, floor_minute, mark_dirty
from .models import Cursor, UsageMinute

HOLDING = (
    Endpoint.State.PROVISIONING,
    Endpoint.State.READY,
    Endpoint.State.UPDATING,
    Endpoint.State.DELETING,
)
MINUTE = dt.timedelta(minutes=1)
COST_FIELDS = ["replicas", "gpus", "gpu_seconds", "rate", "currency"]


class PriceBook:
    """Every price of some GPU types, for looking up the one in force at a moment without a query per minute."""

    def __init__(self, gpu_type_ids: Sequence[int]) -> None:
        self._starts: dict[int, list[dt.datetime]] = {}
        self._prices: dict[int, list[tuple[Decimal, str]]] = {}
        rows = (
            GpuPrice.objects.filter(gpu_type_id__in=set(gpu_type_ids))
            .order_by("gpu_type_id", "effective_from")
            .values_list("gpu_type_id", "effective_from", "hourly_price", "currency")
        )
        for gpu_type_id, start, price, currency in rows:
            self._starts.setdefault(gpu_type_id, []).append(start)
            self._prices.setdefault(gpu_type_id, []).append((price, currency))

    def at(self, gpu_type_id: int, moment: dt.datetime) -> tuple[Decimal, str] | None:
        """The same answer as `inventory.selectors.gpu_price_at`: the latest price that started at or before."""
        starts = self._starts.get(gpu_type_id)
        if not starts:
            return None
        index = bisect.bisect_right(starts, moment) - 1
        return self._prices[gpu_type_id][index] if index >= 0 else None


def replicas_for_cost(endpoint: Endpoint) -> int:
    return endpoint.observed_replicas or endpoint.min_replicas


# The same rule as a query expression over Endpoint rows, for sums in the database (selectors.hourly_burn).
REPLICAS_FOR_COST = Coalesce(NullIf(F("observed_replicas"), Value(0)), F("min_replicas"))


@dataclass
class AccrualReport:
    minutes: int = 0
    rows: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None


def accrue(*, now: dt.datetime | None = None) -> AccrualReport:
    """Accrue every closed minute since the last run (see the module docstring)."""
    now = now or dt.datetime.now(dt.UTC)
    last_closed = floor_minute(now) - MINUTE
    earliest = floor_minute(now) - dt.timedelta(minutes=int(settings.PARETO_METERING_BACKFILL_MINUTES))
    report = AccrualReport()
    with transaction.atomic():
        cursor = Cursor.objects.select_for_update().filter(name="accrual").first()
        if cursor is None:
            cursor = Cursor.objects.create(name="accrual", position=last_closed - MINUTE)
            cursor = Cursor.objects.select_for_update().get(pk=cursor.pk)
        start = max(cursor.position + MINUTE, earliest)
        if start > last_closed:
            return report
        count = int((last_closed - start) / MINUTE) + 1
        minutes = [start + i * MINUTE for i in range(count)]
        report.minutes, report.first, report.last = count, start, last_closed
        rows = accrue_minutes(minutes)
        report.rows = len(rows)
        cursor.position = last_closed
        cursor.save(update_fields=["position"])
    return report


def accrue_minutes(minutes: Sequence[dt.datetime]) -> list[UsageMinute]:
    """Write the GPU time of these minutes for every endpoint that held GPUs in them. Idempotent."""
    if not minutes:
        return []
    first, last = minutes[0], minutes[-1]
    endpoints = list(
        Endpoint.objects.filter(
            Q(state__in=HOLDING) | Q(state=Endpoint.State.DELETED, deleted_at__gt=first),
            created_at__lt=last + MINUTE,
        ).only(
            "pk",
            "team_id",
            "gpu_type_id",
            "gpus_per_replica",
            "min_replicas",
            "observed_replicas",
            "state",
            "created_at",
            "deleted_at",
        )
    )
    prices = PriceBook([e.gpu_type_id for e in endpoints])
    rows: list[UsageMinute] = []
    for endpoint in endpoints:
        replicas = replicas_for_cost(endpoint)
        gpus = replicas * endpoint.gpus_per_replica
        born = floor_minute(endpoint.created_at)
        for minute in minutes:
            if minute < born:
                continue
            if (
                endpoint.deleted_at is not None
                and endpoint.state == Endpoint.State.DELETED
                and minute >= endpoint.deleted_at
            ):
                break
            price = prices.at(endpoint.gpu_type_id, minute)
            rows.append(
                UsageMinute(
                    endpoint_id=endpoint.pk,
                    team_id=endpoint.team_id,
                    minute=minute,
                    replicas=replicas,
                    gpus=gpus,
                    gpu_seconds=gpus * 60,
                    rate=price[0] if price else None,
                    currency=price[1] if price else "",
                )
            )
    if rows:
        UsageMinute.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["endpoint", "minute"],
            update_fields=COST_FIELDS,
            batch_size=5000,
        )
        mark_dirty({floor_hour(row.minute) for row in rows})
    return rows
