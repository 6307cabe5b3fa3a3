"""Endpoints that cannot run end `failed` with the reason, give their quota back, and leave nothing on Ray.

- vLLM refuses the engine arguments: Pareto's checks pass (the catalog claims 8k context), vLLM's do not (the
  model has 2048 positions). Ray retries the replica three times and reports DEPLOY_FAILED; the endpoint shows
  vLLM's own message.
- Ray cannot schedule the replica (a 16-CPU bundle on an 8-CPU head): Ray keeps it DEPLOYING forever, so
  Pareto's deadline (20 s for this worker) fails it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from apps.audit.services import Actor
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.selectors import reserved_gpus

from .support import (
    CeleryProcesses,
    RayCluster,
    Started,
    Transitions,
    plain,
    record,
    request_endpoint,
    wait_for_state,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

S = Endpoint.State


def _reserved(world: dict[str, Any]) -> int:
    return reserved_gpus(team=world["team"], gpu_type=world["cpu"])


def _reserved_by_others(endpoint: Endpoint) -> int:
    """What the team's other endpoints reserve: a failed endpoint must add nothing to it."""
    others = Endpoint.objects.filter(team=endpoint.team, state__in=Endpoint.RESERVING).exclude(pk=endpoint.pk)
    return sum(e.reserved_gpus for e in others)


def _context(ray_cluster: RayCluster, celery: CeleryProcesses, endpoint: Endpoint):
    return lambda: f"{ray_cluster.describe(endpoint.app_name)}\n{celery.context()}"


@pytest.mark.timeout(900)  # may include starting Ray, building the model and starting the worker
def test_engine_arguments_vllm_refuses_fail_the_endpoint_with_vllms_message(
    world: dict[str, Any], celery: CeleryProcesses, ray_cluster: RayCluster, early: dict[str, Started]
):
    # Requested by the lead with the package (`early`): "tiny-llama-8k", max_model_len 4096.
    endpoint, watcher = early["too-long"].endpoint, early["too-long"].watcher
    assert early["too-long"].state_after_request == S.APPROVED  # 4096 <= the catalog's 8192: nothing to refuse
    assert endpoint.max_model_len == 4096

    wait_for_state(
        endpoint, {S.FAILED}, timeout=420, unexpected=(S.READY,), context=_context(ray_cluster, celery, endpoint)
    )
    record("vLLM refuses max_model_len: request until the portal shows failed", watcher.seen(S.FAILED))

    message = plain(endpoint.state_message)
    assert message.startswith("The runtime could not start it:")
    # vLLM's own words: the asked length and the model's real limit.
    assert "max_model_len (4096)" in message, message
    assert "2048" in message, message
    assert endpoint.deadline_at is None
    assert _reserved(world) == _reserved_by_others(endpoint)
    operation = Operation.objects.get(endpoint=endpoint, kind=Operation.Kind.APPLY)
    assert operation.state == Operation.State.FAILED and "max_model_len" in operation.message
    started = time.monotonic()
    wait_until(
        lambda: endpoint.app_name not in ray_cluster.applications(),
        timeout=120,
        what=f"the failed {endpoint.app_name} to be removed from Ray",
        context=_context(ray_cluster, celery, endpoint),
    )
    record("vLLM refuses max_model_len: failed -> application removed from Ray", time.monotonic() - started)


@pytest.fixture
def short_deadline(celery: CeleryProcesses) -> Any:
    celery.restart_worker(PARETO_DEPLOY_DEADLINE="20")
    yield 20
    celery.restart_worker()


@pytest.mark.timeout(600)
def test_an_unschedulable_request_fails_at_paretos_deadline_and_is_removed(
    world: dict[str, Any],
    celery: CeleryProcesses,
    ray_cluster: RayCluster,
    cleanup: list[Endpoint],
    lead_actor: Actor,
    short_deadline: int,
):
    baseline = _reserved(world)
    transitions = Transitions()
    # The inventory says 32 CPUs, so Pareto accepts 16 per replica; the Ray head has 8.
    endpoint = request_endpoint(world, lead_actor, cleanup, name="too-big", gpus_per_replica=16)
    assert endpoint.state == S.APPROVED
    assert _reserved(world) == baseline + 16

    context = _context(ray_cluster, celery, endpoint)
    wait_for_state(endpoint, {S.PROVISIONING}, timeout=60, transitions=transitions, context=context)
    assert endpoint.deadline_at is not None
    wait_for_state(endpoint, {S.FAILED}, timeout=180, transitions=transitions, unexpected=(S.READY,), context=context)
    waited = transitions.at(S.FAILED) - transitions.at(S.PROVISIONING)
    record("unschedulable (deadline 20 s): provisioning -> failed", waited)

    assert waited >= short_deadline - 1  # not before the deadline (the poll that sees provisioning may be late)
    assert endpoint.state_message.startswith(f"Not running after {short_deadline} s (Pareto's deadline)")
    assert _reserved(world) == baseline
    started = time.monotonic()
    wait_until(
        lambda: endpoint.app_name not in ray_cluster.applications(),
        timeout=120,
        what=f"the failed {endpoint.app_name} to be removed from Ray",
        context=context,
    )
    record("unschedulable: failed -> application removed from Ray", time.monotonic() - started)
