"""The runtime side of the endpoint lifecycle: apply the desired set to a cluster, observe it, decide states.

Runtime-neutral: it talks to `runtime.base.Runtime` only, so Ray and Kubernetes clusters share every rule here.

- `cluster_apply` computes the desired set from the database and applies it, one writer per cluster at a time
  (a PostgreSQL advisory lock held for the transaction). Approved endpoints become `provisioning` with a deadline.
- `cluster_observe` reads what runs and moves endpoints: `ready` when running the current spec, `failed` on a
  runtime failure or past Pareto's deadline, `deleted` once gone. It says whether anything is still in transit (keep
  polling) and whether the cluster has drifted from the database (apply again).
Both are safe to run any number of times: state changes are conditional updates on the state that was read.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.services import Actor, audit_record
from apps.inventory.models import Cluster

from . import notifications
from .models import Endpoint, Operation
from .runtime.base import Observed, PermanentRuntimeError, Phase, TransientRuntimeError, runtime_for

log = logging.getLogger(__name__)

_LOCK_NAMESPACE = 7261  # first key of pg_advisory_xact_lock(int, int); the second is the cluster id
SYSTEM = Actor.system()
SUPPORTED_RUNTIMES = (Cluster.Runtime.RAY, Cluster.Runtime.KUBERNETES)


@dataclass(frozen=True)
class ObserveResult:
    in_transit: bool
    needs_apply: bool
    drift: tuple[str, ...] = ()


def _lock_cluster(cluster_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_NAMESPACE, cluster_id])


def _deadline() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.PARETO_DEPLOY_DEADLINE_SECONDS)


def _move(endpoint: Endpoint, *, expect: str, to: str, message: str, **fields: object) -> bool:
    """Conditional state change: only if nobody moved the endpoint since we read it. Audited when it happens."""
    changed = Endpoint.objects.filter(pk=endpoint.pk, state=expect).update(
        state=to, state_message=message, updated_at=timezone.now(), **fields
    )
    if changed:
        audit_record(
            actor=SYSTEM,
            action=f"endpoint.{to}",
            target=endpoint,
            team=endpoint.team,
            before={"state": expect},
            after={"state": to, "message": message},
        )
        endpoint.state, endpoint.state_message = to, message
        for name, value in fields.items():
            setattr(endpoint, name, value)
    return bool(changed)


def _open_operation(endpoint: Endpoint, kind: str) -> Operation:
    op = Operation.objects.filter(endpoint=endpoint, kind=kind, state__in=Operation.OPEN).order_by("-id").first()
    if op is None:
        op = Operation.objects.create(cluster_id=endpoint.cluster_id, endpoint=endpoint, kind=kind)
    return op


def _finish(endpoint: Endpoint, kinds: tuple[str, ...], *, state: str, message: str) -> None:
    Operation.objects.filter(endpoint=endpoint, kind__in=kinds, state__in=Operation.OPEN).update(
        state=state, message=message, finished_at=timezone.now()
    )


def _endpoints(cluster: Cluster, states: tuple[str, ...]) -> list[Endpoint]:
    return list(
        Endpoint.objects.filter(cluster=cluster, state__in=states)
        .select_related("team", "model", "cluster", "gpu_type", "requested_by")
        .order_by("pk")
    )


def _close_stale_operations(cluster_id: int, now: dt.datetime) -> None:
    """Fail open operations that no longer match their endpoint's state (e.g. an apply of an endpoint deleted
    before it ran). Left open, a pending one would make every observe ask for another apply, forever."""
    S, K = Endpoint.State, Operation.Kind
    still_wanted = (
        Q(kind=K.APPLY, endpoint__state__in=(S.APPROVED, S.PROVISIONING))
        | Q(kind=K.UPDATE, endpoint__state=S.UPDATING)
        | Q(kind=K.DELETE, endpoint__state=S.DELETING)
    )
    Operation.objects.filter(cluster_id=cluster_id, state__in=Operation.OPEN, endpoint__isnull=False).exclude(
        still_wanted
    ).update(
        state=Operation.State.FAILED,
        message="Superseded: the endpoint changed before this was carried out.",
        finished_at=now,
    )


def cluster_apply(*, cluster_id: int) -> None:
    """Apply the database's desired set of endpoints to the cluster. Raises TransientRuntimeError to be retried."""
    transient: TransientRuntimeError | None = None
    with transaction.atomic():
        _lock_cluster(cluster_id)
        cluster = Cluster.objects.get(pk=cluster_id)
        desired = _endpoints(cluster, Endpoint.DEPLOYED)
        deleting = _endpoints(cluster, (Endpoint.State.DELETING,))
        now = timezone.now()
        _close_stale_operations(cluster_id, now)
        carried: list[Operation] = []
        for endpoint in desired:
            if endpoint.state == Endpoint.State.APPROVED:
                carried.append(_open_operation(endpoint, Operation.Kind.APPLY))
            elif endpoint.state == Endpoint.State.UPDATING:
                carried.append(_open_operation(endpoint, Operation.Kind.UPDATE))
        carried.extend(_open_operation(e, Operation.Kind.DELETE) for e in deleting)
        # Only an intent not carried out yet makes this an attempt; sending again what an earlier apply already
        # delivered (every apply sends the whole set) is not, so applying twice changes nothing.
        attempts = [op for op in carried if op.state == Operation.State.PENDING]
        for op in attempts:
            op.attempts += 1
            op.state = Operation.State.RUNNING
            op.started_at = op.started_at or now
        try:
            runtime_for(cluster).apply(cluster, desired)
        except TransientRuntimeError as exc:
            transient = exc
            for op in attempts:
                # Still pending: not carried out, so the next observe asks for an apply even if retries run out.
                op.state = Operation.State.PENDING
                op.message = f"Attempt {op.attempts} failed, will retry: {exc}"
                op.save()
        except PermanentRuntimeError as exc:
            for op in carried:
                op.state, op.message, op.finished_at = Operation.State.FAILED, str(exc), now
                op.save()
            for endpoint in desired:
                refused = endpoint.state in (Endpoint.State.APPROVED, Endpoint.State.UPDATING) and _move(
                    endpoint,
                    expect=endpoint.state,
                    to=Endpoint.State.FAILED,
                    message=f"The runtime refused the configuration: {exc}",
                    deadline_at=None,
                )
                if refused:
                    notifications.endpoint_failed(endpoint)
        else:
            for op in attempts:
                op.message = "Applied; waiting for the runtime to report."
                op.save()
            for endpoint in desired:
                if endpoint.state == Endpoint.State.APPROVED:
                    _move(
                        endpoint,
                        expect=Endpoint.State.APPROVED,
                        to=Endpoint.State.PROVISIONING,
                        message="Applied to the cluster; waiting for it to start.",
                        deadline_at=_deadline(),
                    )
                elif endpoint.state == Endpoint.State.UPDATING and endpoint.deadline_at is None:
                    Endpoint.objects.filter(pk=endpoint.pk, state=Endpoint.State.UPDATING).update(
                        deadline_at=_deadline()
                    )
    if transient is not None:
        raise transient


_HEALTHY_MESSAGES = ("Ready.", "Change rolled out.")


def _late(endpoint: Endpoint, now: dt.datetime) -> bool:
    return endpoint.deadline_at is not None and now > endpoint.deadline_at


def _fail(endpoint: Endpoint, *, message: str) -> None:
    kinds = (Operation.Kind.APPLY, Operation.Kind.UPDATE)
    if _move(endpoint, expect=endpoint.state, to=Endpoint.State.FAILED, message=message, deadline_at=None):
        _finish(endpoint, kinds, state=Operation.State.FAILED, message=message)
        notifications.endpoint_failed(endpoint)


def _decide(endpoint: Endpoint, seen: Observed, runtime_base_url: str, now: dt.datetime) -> tuple[bool, bool]:
    """Move one endpoint from what was observed. Returns (still in transit, cluster needs an apply)."""
    state = endpoint.state
    S = Endpoint.State
    if state in (S.PROVISIONING, S.UPDATING):
        if seen.phase == Phase.RUNNING and seen.current:
            message = "Ready." if state == S.PROVISIONING else "Change rolled out."
            fields: dict[str, object] = {
                "base_url": runtime_base_url,
                "observed_generation": endpoint.generation,
                "observed_replicas": seen.replicas,
                "deadline_at": None,
            }
            if state == S.PROVISIONING:
                fields["ready_at"] = now
            if _move(endpoint, expect=state, to=S.READY, message=message, **fields):
                _finish(
                    endpoint,
                    (Operation.Kind.APPLY, Operation.Kind.UPDATE),
                    state=Operation.State.SUCCEEDED,
                    message=message,
                )
                if state == S.PROVISIONING:
                    notifications.endpoint_ready(endpoint)
            return False, False
        if seen.phase == Phase.FAILED and seen.current:
            _fail(endpoint, message=f"The runtime could not start it: {seen.message or 'no reason given'}")
            return False, True
        if _late(endpoint, now):
            why = seen.message or ("the runtime never received it" if seen.phase == Phase.MISSING else "still starting")
            _fail(
                endpoint,
                message=(
                    f"Not running after {settings.PARETO_DEPLOY_DEADLINE_SECONDS} s (Pareto's deadline); "
                    f"the runtime says: {why}"
                ),
            )
            return False, True
        said = seen.message[:4000]
        if said and said != endpoint.state_message:
            Endpoint.objects.filter(pk=endpoint.pk, state=state).update(state_message=said)
            Operation.objects.filter(
                endpoint=endpoint, kind__in=(Operation.Kind.APPLY, Operation.Kind.UPDATE), state=Operation.State.RUNNING
            ).update(message=said)
        return True, seen.phase == Phase.MISSING
    if state == S.APPROVED:
        return True, True
    if state == S.READY:
        if seen.phase == Phase.MISSING:
            Endpoint.objects.filter(pk=endpoint.pk, state=S.READY).update(
                state_message="Missing on the cluster; restoring it."
            )
            return False, True
        if seen.phase == Phase.FAILED and seen.current:
            _fail(endpoint, message=f"The runtime reports it failed: {seen.message}")
            return False, True
        if seen.phase == Phase.UNHEALTHY:
            message = f"Unhealthy: {seen.message}"[:4000]
        elif seen.phase == Phase.FAILED:
            message = f"Changed on the cluster and failing there; restoring it: {seen.message}"[:4000]
        elif endpoint.state_message in _HEALTHY_MESSAGES:
            message = endpoint.state_message  # keep "Change rolled out." rather than rewrite it on every poll
        else:
            message = "Ready."
        if seen.replicas != endpoint.observed_replicas or message != endpoint.state_message:
            Endpoint.objects.filter(pk=endpoint.pk, state=S.READY).update(
                observed_replicas=seen.replicas, state_message=message
            )
        # What runs is not the spec Pareto applied (changed on the cluster by hand): apply Pareto's again.
        return False, not seen.current and seen.phase != Phase.DELETING
    if state == S.DELETING:
        if seen.phase == Phase.MISSING:
            if _move(
                endpoint,
                expect=S.DELETING,
                to=S.DELETED,
                message="Removed from the cluster.",
                deleted_at=now,
                observed_replicas=0,
                base_url="",
            ):
                _finish(endpoint, (Operation.Kind.DELETE,), state=Operation.State.SUCCEEDED, message="Removed.")
            return False, False
        return True, seen.phase != Phase.DELETING
    if state == S.FAILED:
        # A failed endpoint holds no GPUs: whatever is left of it on the cluster must go.
        return False, seen.phase != Phase.MISSING
    return False, False


def cluster_observe(*, cluster_id: int) -> ObserveResult:
    cluster = Cluster.objects.get(pk=cluster_id)
    watched = _endpoints(cluster, (*Endpoint.DEPLOYED, Endpoint.State.DELETING, Endpoint.State.FAILED))
    runtime = runtime_for(cluster)
    observed, orphans = runtime.observe(cluster, watched)
    now = timezone.now()
    in_transit = needs_apply = False
    drift: list[str] = [f"{name} is Pareto's but no endpoint wants it" for name in orphans]
    for endpoint in watched:
        seen = observed.get(endpoint.pk, Observed(Phase.MISSING))
        with transaction.atomic():
            transit, apply = _decide(endpoint, seen, runtime.base_url(cluster, endpoint), now)
        in_transit |= transit
        if apply:
            needs_apply = True
            if endpoint.state == Endpoint.State.READY and seen.phase == Phase.MISSING:
                drift.append(f"{endpoint.app_name} ({endpoint}) is missing")
            elif endpoint.state == Endpoint.State.READY and not seen.current:
                # A ready endpoint runs the spec last applied; anything else was changed on the cluster by hand.
                drift.append(f"{endpoint.app_name} ({endpoint}) differs from its desired spec")
    # A pending operation is an intent no apply has carried out yet (a lost message, a worker that died).
    pending = Operation.objects.filter(cluster=cluster, state=Operation.State.PENDING).exists()
    return ObserveResult(
        in_transit=in_transit or pending, needs_apply=needs_apply or pending or bool(orphans), drift=tuple(drift)
    )


def record_reconcile(*, cluster_id: int, drift: tuple[str, ...]) -> Operation:
    """An Operation row for a reconcile that found drift, so the repair is visible on the cluster's history."""
    now = timezone.now()
    return Operation.objects.create(
        cluster_id=cluster_id,
        kind=Operation.Kind.RECONCILE,
        state=Operation.State.SUCCEEDED,
        attempts=1,
        message="Re-applied the desired set: " + "; ".join(drift),
        started_at=now,
        finished_at=now,
    )
