"""Celery tasks of the Kubernetes runtime: readiness by watch, and team namespaces that follow the GPU quotas.

Readiness: beat starts `kube_watch_all`, which starts one `kube_watch` per Kubernetes cluster. A watch holds one
long request open (timeoutSeconds) on the cluster's serving objects (RayServices, or Deployments), resuming from
the resourceVersion the previous watch reached (kept in Redis), and re-listing when the server answers 410 Gone.
Every event on one of Pareto's objects calls `lifecycle.cluster_observe`: the lifecycle alone decides states; the
watch only makes it look as soon as something changed instead of at the next poll. One watch per cluster at a
time (a Redis lock), so overlapping beats do not double the load.

Quotas: `teams.services.quota_set` / `quota_delete` enqueue `kube_team_sync` once committed; `kube_sync_all`
(beat) restores every team namespace, ResourceQuota and LimitRange, so edits made by hand do not last.
"""

from __future__ import annotations

import logging
import math
import time
import uuid

from celery import shared_task
from django.conf import settings
from django.db import transaction

from apps.core.health import redis_client
from apps.inventory.models import Cluster
from apps.teams.models import Team

from . import lifecycle
from .runtime import kube
from .runtime import manifests as m
from .runtime.base import PermanentRuntimeError, TransientRuntimeError
from .runtime.kubernetes import Gone, KubeApi

log = logging.getLogger(__name__)

WATCHED_EVENTS = ("ADDED", "MODIFIED", "DELETED")


def _kube_clusters() -> list[int]:
    return list(Cluster.objects.filter(runtime=Cluster.Runtime.KUBERNETES).values_list("pk", flat=True))


# --- readiness by watch --------------------------------------------------------------------------------------------
def _rv_key(cluster: Cluster) -> str:
    return f"pareto:kube:rv:{cluster.pk}:{kube.primary_kind(cluster).plural}"


def _lock_key(cluster_id: int) -> str:
    return f"pareto:kube:watch:{cluster_id}"


def _decode(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _observe(cluster_id: int) -> None:
    """Let the lifecycle look, and ask for an apply when it finds the cluster off its desired state."""
    from .tasks import cluster_apply

    try:
        result = lifecycle.cluster_observe(cluster_id=cluster_id)
    except TransientRuntimeError as exc:
        log.warning("cluster %s: observe after a watch event failed: %s", cluster_id, exc)
        return
    if result.needs_apply:
        if result.drift:
            lifecycle.record_reconcile(cluster_id=cluster_id, drift=result.drift)
        cluster_apply.delay(cluster_id)


def watch_cluster(cluster_id: int, *, seconds: int | None = None) -> int:
    """Watch one cluster for up to `seconds`; returns how many events about Pareto's objects arrived."""
    cluster = Cluster.objects.get(pk=cluster_id)
    seconds = seconds or settings.PARETO_KUBE_WATCH_SECONDS
    kind = kube.primary_kind(cluster)
    selector = m.cluster_selector(cluster)
    redis = redis_client()
    deadline = time.monotonic() + seconds
    events = 0
    with KubeApi.for_cluster(cluster) as api:
        while (remaining := deadline - time.monotonic()) > 0:
            left = max(1, math.ceil(remaining))
            version = _decode(redis.get(_rv_key(cluster)))
            if not version:
                # No place to resume from (first watch, or the server forgot it): list, look once, watch from there.
                try:
                    _, version = api.list(kind, label_selector=selector)
                except PermanentRuntimeError as exc:
                    log.warning("cluster %s: cannot list %s to watch: %s", cluster_id, kind, exc)
                    return events
                redis.set(_rv_key(cluster), version, ex=24 * 3600)
                _observe(cluster_id)
            try:
                for event_type, obj in api.watch(
                    kind, label_selector=selector, resource_version=version, timeout_seconds=left
                ):
                    new_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                    if new_version:
                        redis.set(_rv_key(cluster), new_version, ex=24 * 3600)
                    if event_type in WATCHED_EVENTS:
                        events += 1
                        _observe(cluster_id)
            except Gone:
                log.info("cluster %s: resourceVersion %s expired; listing again", cluster_id, version)
                redis.delete(_rv_key(cluster))
                continue
            except TransientRuntimeError as exc:
                log.warning("cluster %s: watch broke, resuming at the next beat: %s", cluster_id, exc)
                return events
            # The server closed the watch at its timeout: the next beat's watch resumes from the saved version.
            break
    return events


@shared_task(name="endpoints.kube_watch", acks_late=True, ignore_result=True)
def kube_watch(cluster_id: int) -> int:
    if not Cluster.objects.filter(pk=cluster_id, runtime=Cluster.Runtime.KUBERNETES).exists():
        return 0
    token = uuid.uuid4().hex
    redis = redis_client()
    if not redis.set(_lock_key(cluster_id), token, nx=True, ex=settings.PARETO_KUBE_WATCH_SECONDS + 60):
        return 0  # another worker is watching this cluster
    try:
        return watch_cluster(cluster_id)
    except PermanentRuntimeError as exc:
        log.warning("cluster %s: cannot watch: %s", cluster_id, exc)
        return 0
    finally:
        if _decode(redis.get(_lock_key(cluster_id))) == token:
            redis.delete(_lock_key(cluster_id))


@shared_task(name="endpoints.kube_watch_all", ignore_result=True)
def kube_watch_all() -> int:
    ids = _kube_clusters()
    for cluster_id in ids:
        kube_watch.delay(cluster_id)
    return len(ids)


# --- team namespaces and quotas --------------------------------------------------------------------------------------
@shared_task(
    name="endpoints.kube_team_sync",
    autoretry_for=(TransientRuntimeError,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=10,
    acks_late=True,
)
def kube_team_sync(team_id: int) -> list[int]:
    """After a quota change: the team's namespace objects on every Kubernetes cluster. Returns the clusters
    whose namespace now exists."""
    team = Team.objects.filter(pk=team_id).first()
    if team is None:
        return []
    synced = []
    for cluster in Cluster.objects.filter(runtime=Cluster.Runtime.KUBERNETES).order_by("pk"):
        try:
            if kube.sync_team(cluster, team):
                synced.append(cluster.pk)
        except PermanentRuntimeError as exc:
            log.warning("cluster %s: cannot sync the namespace of %s: %s", cluster.pk, team.slug, exc)
    return synced


def enqueue_team_sync(team: Team) -> None:
    """Called inside the quota-changing transaction; the task runs once it has committed."""
    if not Cluster.objects.filter(runtime=Cluster.Runtime.KUBERNETES).exists():
        return
    team_id = team.pk
    transaction.on_commit(lambda: kube_team_sync.delay(team_id))


@shared_task(name="endpoints.kube_sync_namespaces", acks_late=True, ignore_result=True)
def kube_sync_namespaces(cluster_id: int) -> list[str]:
    cluster = Cluster.objects.filter(pk=cluster_id, runtime=Cluster.Runtime.KUBERNETES).first()
    if cluster is None:
        return []
    try:
        return kube.sync_namespaces(cluster)
    except (PermanentRuntimeError, TransientRuntimeError) as exc:
        log.warning("cluster %s: cannot sync team namespaces: %s", cluster_id, exc)
        return []


@shared_task(name="endpoints.kube_sync_all", ignore_result=True)
def kube_sync_all() -> int:
    ids = _kube_clusters()
    for cluster_id in ids:
        kube_sync_namespaces.delay(cluster_id)
    return len(ids)
