"""The lifecycle survives what happens to workers and queues: a worker killed mid-rollout, a message delivered
more than once."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from celery.signals import after_task_publish

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.endpoints.models import Endpoint, Operation
from controlplane.celery import app as celery_app

from .support import (
    RECONCILE_INTERVAL,
    CeleryProcesses,
    RayCluster,
    Transitions,
    look,
    record,
    request_endpoint,
    wait_for_state,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

S = Endpoint.State


def _audit_count(endpoint: Endpoint, action: str) -> int:
    return AuditEvent.objects.filter(
        target_type="endpoints.endpoint", target_id=str(endpoint.pk), action=action
    ).count()


@pytest.mark.timeout(900)
def test_a_worker_killed_while_provisioning_is_replaced_and_the_reconciler_brings_the_endpoint_up(
    world: dict[str, Any], celery: CeleryProcesses, ray_cluster: RayCluster, cleanup: list[Endpoint], lead_actor: Actor
):
    transitions = Transitions()
    endpoint = request_endpoint(world, lead_actor, cleanup, name="survivor")
    context = lambda: f"{ray_cluster.describe(endpoint.app_name)}\n{celery.context()}"  # noqa: E731
    wait_for_state(endpoint, {S.PROVISIONING}, timeout=60, transitions=transitions, context=context)

    celery.kill_worker()  # SIGKILL: the poll chain's next message dies with it, unacknowledged
    killed = time.monotonic()
    time.sleep(3)
    assert look(endpoint, transitions) == S.PROVISIONING
    assert endpoint.app_name in ray_cluster.applications()  # the apply reached Ray before the kill

    celery.start_worker()  # no purge: whatever is queued is still wanted
    restarted = time.monotonic()
    running_at: list[float] = []

    def ready() -> bool:
        if not running_at and ray_cluster.applications().get(endpoint.app_name, {}).get("status") == "RUNNING":
            running_at.append(time.monotonic())
        return look(endpoint, transitions) == S.READY

    wait_until(ready, timeout=480, what=f"{endpoint} to be ready after the worker was replaced", context=context)
    now = time.monotonic()
    record("worker SIGKILLed while provisioning: kill -> new worker ready", restarted - killed)
    record("worker SIGKILLed while provisioning: kill -> portal shows ready", now - killed)
    if running_at:
        # Only the reconciler can notice: the killed worker's poll message stays unacknowledged in Redis.
        record("worker SIGKILLed: Ray reports RUNNING -> portal shows ready (reconciler)", now - running_at[0])
        assert now - running_at[0] < float(RECONCILE_INTERVAL) * 3 + 5

    assert endpoint.state_message == "Ready."
    assert list(ray_cluster.ours()) == [endpoint.app_name]
    assert ray_cluster.applications()[endpoint.app_name]["status"] == "RUNNING"
    operation = Operation.objects.get(endpoint=endpoint, kind=Operation.Kind.APPLY)
    assert (operation.state, operation.attempts) == (Operation.State.SUCCEEDED, 1)
    assert _audit_count(endpoint, "endpoint.provisioning") == _audit_count(endpoint, "endpoint.ready") == 1
    assert "cluster_reconcile" in celery.worker_log()


@pytest.mark.timeout(300)
def test_the_same_apply_task_delivered_twice_makes_one_application(
    world: dict[str, Any], celery: CeleryProcesses, ray_cluster: RayCluster, cleanup: list[Endpoint], lead_actor: Actor
):
    # A 16-CPU replica cannot be scheduled on the 8-CPU head, so no vLLM starts: this is about the control plane,
    # and Ray still creates the application.
    published: list[dict[str, Any]] = []

    def capture(sender: str | None = None, headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
        if sender == "endpoints.cluster_apply" and headers is not None:
            published.append({"id": headers["id"], "args": body[0], "kwargs": body[1]})

    after_task_publish.connect(capture, weak=False)
    try:
        endpoint = request_endpoint(world, lead_actor, cleanup, name="twice", gpus_per_replica=16)
    finally:
        after_task_publish.disconnect(capture)
    assert len(published) == 1
    message = published[0]
    for _ in range(2):  # the broker delivers the very same message again (same task id, same arguments)
        celery_app.send_task(
            "endpoints.cluster_apply", args=message["args"], kwargs=message["kwargs"], task_id=message["id"]
        )

    done = re.compile(rf"endpoints\.cluster_apply\[{message['id']}\] succeeded")
    wait_until(
        lambda: len(done.findall(celery.worker_log())) == 3,
        timeout=120,
        what="the worker to run the apply three times",
        context=celery.context,
    )
    wait_for_state(endpoint, {S.PROVISIONING}, timeout=30)

    assert list(ray_cluster.ours()) == [endpoint.app_name]
    operations = Operation.objects.filter(endpoint=endpoint)
    assert [(op.kind, op.state, op.attempts) for op in operations] == [
        (Operation.Kind.APPLY, Operation.State.RUNNING, 1)
    ]
    assert _audit_count(endpoint, "endpoint.provisioning") == 1
