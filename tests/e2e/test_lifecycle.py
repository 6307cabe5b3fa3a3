"""A lead's endpoint on a real Ray with vLLM: requested, approved, provisioned, ready, answering chat completions,
scaled out, and deleted, each step carried out by the real Celery worker.

One tiny vLLM application serves every test here (`deployed`, requested at the package's start beside the one
test_failures needs, so that the two starts overlap); the last test deletes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.endpoints import services
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.selectors import reserved_gpus

from .support import (
    CeleryProcesses,
    RayCluster,
    Started,
    Transitions,
    record,
    wait_for_state,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

S = Endpoint.State
START_TIMEOUT = 420  # a tiny vLLM application took 75-115 s to start here; slack for a busy machine


@dataclass
class Deployed:
    endpoint: Endpoint
    lead: Actor
    state_after_request: str
    transitions: Transitions
    ray_running_at: float | None  # seconds after the request at which the watcher first saw Ray report RUNNING


def _actions(endpoint: Endpoint) -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(target_type="endpoints.endpoint", target_id=str(endpoint.pk)).order_by("id")
    return list(events.values_list("action", "actor_label"))


def _chat(session: Any, endpoint: Endpoint, content: str = "Hello! How are you today?") -> Any:
    return session.post(
        f"{endpoint.base_url}/chat/completions",
        json={"model": endpoint.served_model_id, "messages": [{"role": "user", "content": content}], "max_tokens": 16},
        timeout=60,
    )


@pytest.fixture(scope="module")
def deployed(
    world: dict[str, Any], celery: CeleryProcesses, ray_cluster: RayCluster, early: dict[str, Started]
) -> Deployed:
    """The shared endpoint ("chat", requested with the package), once it is ready."""
    chat = early["chat"]
    endpoint, watcher = chat.endpoint, chat.watcher
    wait_for_state(
        endpoint,
        {S.READY},
        timeout=START_TIMEOUT,
        context=lambda: f"{ray_cluster.describe(endpoint.app_name)}\n{celery.context()}",
    )
    record("tiny vLLM endpoint: request until the portal shows ready", watcher.seen(S.READY))
    transitions = watcher.transitions
    if watcher.ray_running_at is not None:
        record(
            "tiny vLLM endpoint: Ray reports RUNNING -> portal shows ready",
            transitions.at(S.READY) - watcher.ray_running_at,
        )
    lead = Actor(user=world["lead"], source_ip="127.0.0.1")
    return Deployed(endpoint, lead, chat.state_after_request, transitions, watcher.ray_running_at)


@pytest.mark.timeout(900)  # may include starting Ray, building the model, starting the worker and vLLM
def test_a_leads_request_is_approved_provisioned_and_becomes_ready(deployed: Deployed, ray_cluster: RayCluster):
    endpoint = deployed.endpoint
    endpoint.refresh_from_db()

    assert deployed.state_after_request == S.APPROVED  # the team's policy is auto and the request fits
    assert _actions(endpoint) == [
        ("endpoint.request", "e2e-lead"),
        ("endpoint.provisioning", "system"),
        ("endpoint.ready", "system"),
    ]
    assert deployed.transitions.states()[-1] == S.READY
    assert set(deployed.transitions.states()) <= {S.APPROVED, S.PROVISIONING, S.READY}
    assert endpoint.state_message == "Ready."
    assert endpoint.base_url == f"{ray_cluster.head.serve_url}/e2e/chat/v1"
    assert endpoint.observed_replicas == 1 and endpoint.observed_generation == endpoint.generation == 1
    assert endpoint.ready_at is not None and endpoint.deadline_at is None
    operation = Operation.objects.get(endpoint=endpoint, kind=Operation.Kind.APPLY)
    assert (operation.state, operation.attempts) == (Operation.State.SUCCEEDED, 1)

    app = ray_cluster.applications()[endpoint.app_name]
    assert app["status"] == "RUNNING"
    assert app["route_prefix"] == "/e2e/chat"
    llm = app["deployed_app_config"]["args"]["llm_configs"][0]
    assert llm["model_loading_config"] == {
        "model_id": endpoint.served_model_id,
        "model_source": endpoint.model.source,
    }
    assert llm["placement_group_config"] == {"bundles": [{"CPU": 1}]}
    assert llm["engine_kwargs"]["max_model_len"] == 1024  # the catalog's default context for the tiny model

    events = {
        action: event.created_at
        for action, event in (
            (e.action, e) for e in AuditEvent.objects.filter(target_type="endpoints.endpoint", target_id=endpoint.pk)
        )
    }
    record(
        "tiny vLLM endpoint: approval committed -> applied to Ray (audit times)",
        (events["endpoint.provisioning"] - events["endpoint.request"]).total_seconds(),
    )
    record(
        "tiny vLLM endpoint: applied -> ready (vLLM start, audit times)",
        (events["endpoint.ready"] - events["endpoint.provisioning"]).total_seconds(),
    )


@pytest.mark.timeout(120)
def test_a_chat_completion_through_the_base_url_answers_with_usage(deployed: Deployed, ray_cluster: RayCluster):
    endpoint = deployed.endpoint
    endpoint.refresh_from_db()
    session = ray_cluster.session()

    started = time.monotonic()
    response = _chat(session, endpoint)
    record("tiny vLLM endpoint: one chat completion (16 tokens)", time.monotonic() - started)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == endpoint.served_model_id
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    models = session.get(f"{endpoint.base_url}/models", timeout=30)
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == [endpoint.served_model_id]


@pytest.mark.timeout(300)
def test_scaling_out_rolls_out_and_returns_to_ready(deployed: Deployed, ray_cluster: RayCluster):
    endpoint, lead = deployed.endpoint, deployed.lead
    before = ray_cluster.applications()[endpoint.app_name]
    llm_name = f"LLMServer:{endpoint.served_model_id}"
    replicas_before = {r["replica_id"] for r in before["deployments"][llm_name]["replicas"]}

    started = time.monotonic()
    endpoint = services.endpoint_update(actor=lead, endpoint=endpoint, max_replicas=2)
    assert (endpoint.state, endpoint.generation) == (S.UPDATING, 2)
    transitions = Transitions(started=started)
    wait_for_state(
        endpoint,
        {S.READY},
        timeout=240,
        transitions=transitions,
        context=lambda: ray_cluster.describe(endpoint.app_name),
    )
    record("tiny vLLM endpoint: scale max_replicas 1 -> 2, update until ready", transitions.at(S.READY))

    assert endpoint.state_message == "Change rolled out."
    assert endpoint.observed_generation == 2
    assert reserved_gpus(team=endpoint.team, gpu_type=endpoint.gpu_type) == 2  # 1 CPU per replica x max 2
    operation = Operation.objects.get(endpoint=endpoint, kind=Operation.Kind.UPDATE)
    assert (operation.state, operation.attempts) == (Operation.State.SUCCEEDED, 1)
    app = ray_cluster.applications()[endpoint.app_name]
    assert app["status"] == "RUNNING"
    autoscaling = app["deployments"][llm_name]["deployment_config"]["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 2)
    # A new autoscaling range is a light change in Serve: the running vLLM replica keeps serving.
    assert {r["replica_id"] for r in app["deployments"][llm_name]["replicas"] if r["state"] == "RUNNING"} == (
        replicas_before
    )
    assert _chat(ray_cluster.session(), endpoint).status_code == 200


@pytest.mark.timeout(300)
def test_deleting_removes_the_application_from_ray(deployed: Deployed, ray_cluster: RayCluster):
    endpoint, lead = deployed.endpoint, deployed.lead
    endpoint.refresh_from_db()
    base_url = endpoint.base_url

    started = time.monotonic()
    endpoint = services.endpoint_delete(actor=lead, endpoint=endpoint)
    assert endpoint.state == S.DELETING
    assert reserved_gpus(team=endpoint.team, gpu_type=endpoint.gpu_type) == 2  # held until Ray confirms
    transitions = Transitions(started=started)
    wait_for_state(
        endpoint,
        {S.DELETED},
        timeout=180,
        transitions=transitions,
        context=lambda: ray_cluster.describe(endpoint.app_name),
    )
    record("tiny vLLM endpoint: delete until the portal shows deleted", transitions.at(S.DELETED))

    assert endpoint.app_name not in ray_cluster.applications()
    assert endpoint.deleted_at is not None and endpoint.base_url == "" and endpoint.observed_replicas == 0
    assert reserved_gpus(team=endpoint.team, gpu_type=endpoint.gpu_type) == 0
    operation = Operation.objects.get(endpoint=endpoint, kind=Operation.Kind.DELETE)
    assert operation.state == Operation.State.SUCCEEDED
    gone = ray_cluster.session().post(
        f"{base_url}/chat/completions", json={"model": endpoint.served_model_id}, timeout=30
    )
    assert gone.status_code == 404
