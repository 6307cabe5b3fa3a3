"""Celery tasks for the endpoint lifecycle. Each takes ids, loads fresh rows and calls `lifecycle`.

Polling is a chain of `cluster_poll` tasks with backoff. At most one chain per cluster continues: each chain
carries a token, and starting a new chain replaces the token in Redis, so older chains stop at their next step.
"""

from __future__ import annotations

import logging
import uuid

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from apps.core.health import redis_client
from apps.inventory.models import Cluster

from . import lifecycle
from .runtime.base import TransientRuntimeError

log = logging.getLogger(__name__)


def _token_key(cluster_id: int) -> str:
    return f"pareto:poll:{cluster_id}"


def start_polling(cluster_id: int) -> None:
    token = uuid.uuid4().hex
    # The key outlives any sane gap between two polls; a chain that finds another token stops.
    redis_client().set(_token_key(cluster_id), token, ex=int(settings.PARETO_POLL_MAX_SECONDS * 10) + 60)
    cluster_poll.apply_async((cluster_id, token, 0), countdown=settings.PARETO_POLL_INITIAL_SECONDS)


@shared_task(
    name="endpoints.cluster_apply",
    autoretry_for=(TransientRuntimeError,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
    acks_late=True,
)
def cluster_apply(cluster_id: int) -> None:
    if not Cluster.objects.filter(pk=cluster_id).exists():
        return
    lifecycle.cluster_apply(cluster_id=cluster_id)
    start_polling(cluster_id)


@shared_task(name="endpoints.cluster_poll", acks_late=True)
def cluster_poll(cluster_id: int, token: str, attempt: int) -> None:
    current = redis_client().get(_token_key(cluster_id))
    if current is None or (current.decode() if isinstance(current, bytes) else current) != token:
        return  # a newer chain took over
    try:
        result = lifecycle.cluster_observe(cluster_id=cluster_id)
    except TransientRuntimeError as exc:
        log.warning("cluster %s: observe failed, will poll again: %s", cluster_id, exc)
        result = lifecycle.ObserveResult(in_transit=True, needs_apply=False)
    if result.needs_apply:
        cluster_apply.delay(cluster_id)
        return  # the apply starts a fresh chain
    if result.in_transit:
        delay = min(settings.PARETO_POLL_INITIAL_SECONDS * (2 ** (attempt + 1)), settings.PARETO_POLL_MAX_SECONDS)
        redis_client().expire(_token_key(cluster_id), int(settings.PARETO_POLL_MAX_SECONDS * 10) + 60)
        cluster_poll.apply_async((cluster_id, token, attempt + 1), countdown=delay)


@shared_task(name="endpoints.cluster_reconcile", acks_late=True)
def cluster_reconcile(cluster_id: int) -> None:
    """Compare desired and observed state; repair drift with an apply, and make sure transit is being polled."""
    try:
        result = lifecycle.cluster_observe(cluster_id=cluster_id)
    except TransientRuntimeError as exc:
        log.warning("cluster %s: reconcile could not observe: %s", cluster_id, exc)
        return
    Cluster.objects.filter(pk=cluster_id).update(last_reconciled_at=timezone.now())
    if result.needs_apply:
        if result.drift:
            lifecycle.record_reconcile(cluster_id=cluster_id, drift=result.drift)
        cluster_apply.delay(cluster_id)
    elif result.in_transit and redis_client().get(_token_key(cluster_id)) is None:
        start_polling(cluster_id)


@shared_task(name="endpoints.reconcile_all", ignore_result=True)
def reconcile_all() -> int:
    ids = list(Cluster.objects.filter(runtime__in=lifecycle.SUPPORTED_RUNTIMES).values_list("pk", flat=True))
    for cluster_id in ids:
        cluster_reconcile.delay(cluster_id)
    return len(ids)


# Registers the Kubernetes runtime's tasks (watch, namespace sync) with the worker, which discovers tasks.py only.
from . import kube_tasks  # noqa: E402, F401
