"""Periodic metering work. Each task is safe to run twice (see the modules it calls)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db.models import Count
from django.utils import timezone

from apps.audit.services import Actor
from apps.inventory.models import Cluster

from . import accrual, ingest, rollup, selectors, services

log = logging.getLogger(__name__)


# Endpoints booked per scrape task: enough to share the per-transaction cost, few enough to spread over workers.
SCRAPE_BATCH = 100


@shared_task(name="metering.scrape_all", acks_late=True, ignore_result=True)
def scrape_all() -> int:
    """Fan out the scrape: batches of clusters with metered endpoints, about SCRAPE_BATCH endpoints per task (one
    fetch per target serves all of a cluster's endpoints)."""
    counts = (
        Cluster.objects.filter(endpoints__state__in=ingest.METERED_STATES)
        .annotate(metered=Count("endpoints"))
        .order_by("pk")
        .values_list("pk", "metered")
    )
    batches: list[list[int]] = [[]]
    size = 0
    for cluster_id, metered in counts:
        if batches[-1] and size + metered > SCRAPE_BATCH:
            batches.append([])
            size = 0
        batches[-1].append(cluster_id)
        size += metered
    for batch in batches:
        if batch:
            # A scrape older than the next one is worthless: let it expire rather than pile up behind a slow worker.
            scrape_clusters.apply_async((batch,), expires=60)
    return sum(len(batch) for batch in batches)


@shared_task(name="metering.scrape_clusters", acks_late=True, ignore_result=True)
def scrape_clusters(cluster_ids: list[int]) -> None:
    for report in ingest.scrape_clusters(cluster_ids=cluster_ids):
        if report.failed:
            log.warning("cluster %s: metrics targets failed: %s (%s)", report.cluster_id, report.failed, report.message)


@shared_task(name="metering.accrue", acks_late=True, ignore_result=True)
def accrue() -> int:
    return accrual.accrue().rows


@shared_task(name="metering.rollup", acks_late=True, ignore_result=True)
def rollup_and_alert() -> None:
    rollup.rollup(until=timezone.now())
    services.budget_alerts_check()


@shared_task(name="metering.prune", acks_late=True, ignore_result=True)
def prune() -> int:
    return rollup.prune()


@shared_task(name="metering.monthly_statements", acks_late=True, ignore_result=True)
def monthly_statements() -> int:
    """After a month ends, make its statements once (finance regenerates or closes them from the portal)."""
    month = selectors.previous_month(selectors.current_month())
    if services.Statement.objects.filter(month=month).exists():
        return 0
    report = services.statements_generate(actor=Actor.system(), month=month)
    return len(report.written)
