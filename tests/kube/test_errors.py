"""How API errors are handled: timeouts, 5xx and 429 are retried with backoff; 409 Conflict re-reads and retries;
any other 4xx fails with the API server's own message, and only the endpoint it concerns."""

from __future__ import annotations

import pytest

from apps.endpoints import tasks
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.runtime.base import PermanentRuntimeError, TransientRuntimeError
from apps.endpoints.runtime.kube import KubernetesRuntime
from apps.endpoints.tests.fakes import queued_tasks

from .conftest import fresh
from .test_lifecycle_rayservice import ready


def creates(apiserver, plural: str = "rayservices") -> int:
    return len([r for r in apiserver.asked("POST", plural)])


def test_a_503_is_retried_and_the_apply_goes_through(world, apiserver):
    endpoint = world.request()
    apiserver.fail("POST", "/rayservices", status=503, times=2)
    world.apply()
    assert creates(apiserver) == 3
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is not None
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING


def test_a_429_waits_as_long_as_retry_after_says(world, apiserver, settings):
    settings.PARETO_KUBE_RETRY_BACKOFF_SECONDS = 5  # would be far too slow: Retry-After must win
    endpoint = world.request()
    apiserver.fail("GET", "/namespaces/pareto-team-a", status=429, retry_after=0)
    world.apply()
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is not None


def test_errors_that_last_leave_the_intent_pending_for_the_task_to_retry(world, apiserver):
    endpoint = world.request()
    apiserver.fail("POST", "/rayservices", status=500, times=3, message="etcdserver: request timed out")
    with pytest.raises(TransientRuntimeError, match="etcdserver: request timed out"):
        world.apply()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.APPROVED
    op = Operation.objects.get(endpoint=endpoint)
    assert (op.state, op.attempts) == ("pending", 1)
    assert "will retry" in op.message
    # The task's own retry (autoretry_for TransientRuntimeError) carries it out once the server recovers.
    tasks.cluster_apply(world.cluster.pk)
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING
    assert queued_tasks("endpoints.cluster_poll")


def test_a_timeout_is_retried_and_the_object_made_once(world, apiserver, settings):
    settings.PARETO_KUBE_HTTP_TIMEOUT = 0.5
    endpoint = world.request()
    # The server answers the first create too late; it still lands, so one of the two creates is AlreadyExists.
    apiserver.fail("POST", "/rayservices", status=0, delay=1.0)
    world.apply()
    assert creates(apiserver) == 2
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING
    assert len(apiserver.list("RayService")) == 1


def test_a_dropped_connection_is_retried(world, apiserver):
    endpoint = world.request()
    apiserver.fail("GET", "/rayservices", status=0, drop=True)
    world.apply()
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING


def test_a_stale_resource_version_is_re_read_and_the_update_retried(world, apiserver, operator):
    endpoint = ready(world, operator)

    def someone_else_writes():
        apiserver.edit(
            "RayService",
            endpoint.app_name,
            "pareto-team-a",
            lambda o: o["metadata"].setdefault("labels", {}).update({"cost-center": "cc-7"}),
        )

    from apps.endpoints import services

    services.endpoint_update(actor=world.lead, endpoint=endpoint, engine_args={"max_num_seqs": 32})
    apiserver.fail("PUT", f"/rayservices/{endpoint.app_name}", status=0, before=someone_else_writes)
    world.apply()
    puts = apiserver.asked("PUT", f"/rayservices/{endpoint.app_name}")
    assert len(puts) == 2
    assert puts[0].body["metadata"]["resourceVersion"] != puts[1].body["metadata"]["resourceVersion"]
    live = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")
    assert "max_num_seqs: 32" in live["spec"]["serveConfigV2"]
    assert live["metadata"]["labels"]["cost-center"] == "cc-7"  # the other writer's change survives


def test_a_422_fails_that_endpoint_with_the_api_message_and_not_the_others(world, apiserver, operator):
    first = world.request(name="first")
    second = world.request(name="second")
    message = 'RayService.ray.io "x" is invalid: spec.rayClusterConfig: admission webhook "vraycluster" denied it'
    apiserver.fail("POST", "/rayservices", status=422, message=message)  # the first create
    world.apply()
    assert {fresh(e).state for e in (first, second)} == {Endpoint.State.PROVISIONING}
    operator.step(2)
    world.observe()
    first, second = fresh(first), fresh(second)
    assert first.state == Endpoint.State.FAILED
    assert message in first.state_message
    assert "(HTTP 422)" in first.state_message
    assert second.state == Endpoint.State.READY


def test_a_403_names_the_missing_permission(world, apiserver):
    endpoint = world.request()
    message = (
        'rayservices.ray.io is forbidden: User "system:serviceaccount:pareto:pareto" cannot create resource '
        '"rayservices" in API group "ray.io" in the namespace "pareto-team-a"'
    )
    apiserver.fail("POST", "/rayservices", status=403, message=message)
    world.apply()
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert message in endpoint.state_message


def test_refused_credentials_fail_the_whole_apply_with_a_clear_message(world, apiserver, tmp_path, monkeypatch):
    monkeypatch.setenv("PARETO_TEST_KUBECONFIG", str(apiserver.write_kubeconfig(tmp_path / "bad", token="wrong")))
    endpoint = world.request()
    world.apply()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "refused Pareto's credentials" in endpoint.state_message


def test_a_missing_kubeconfig_variable_is_explained(world, apiserver, monkeypatch):
    monkeypatch.delenv("PARETO_TEST_KUBECONFIG")
    endpoint = world.request()
    world.apply()
    assert "PARETO_TEST_KUBECONFIG" in fresh(endpoint).state_message
    assert "is not set in this worker" in fresh(endpoint).state_message


def test_observe_errors_are_transient_so_polling_goes_on(world, apiserver):
    world.request()
    world.apply()
    apiserver.fail("GET", "/rayservices", status=503, times=3)
    with pytest.raises(TransientRuntimeError):
        KubernetesRuntime().observe(world.cluster, list(Endpoint.objects.all()))
    token = "t"
    from apps.core.health import redis_client

    redis_client().set(tasks._token_key(world.cluster.pk), token)
    apiserver.fail("GET", "/rayservices", status=503, times=3)
    tasks.cluster_poll(world.cluster.pk, token, 0)  # logs, and keeps polling
    assert queued_tasks("endpoints.cluster_poll")


def test_a_role_without_the_other_flavours_kinds_is_enough(world, apiserver, operator):
    """docs/kubernetes.md lets a cluster's role leave out what its flavour does not use."""
    world.cluster.kube_flavour = "deployment"
    world.cluster.save()
    for path, resource, group in (
        ("/apis/ray.io/", "rayservices", "ray.io"),
        ("/ingresses", "ingresses", "networking.k8s.io"),
    ):
        message = (
            f'{resource}.{group} is forbidden: User "system:serviceaccount:pareto:pareto" cannot list resource '
            f'"{resource}" in API group "{group}" at the cluster scope'
        )
        apiserver.fail("GET", path, status=403, times=100, message=message)
    endpoint = world.request()
    world.apply()
    operator.step(2)
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.READY
    # The kinds it does use must be allowed: that is an error the endpoint shows.
    apiserver.fail("GET", "/deployments", status=403, times=100, message="deployments.apps is forbidden")
    with pytest.raises(PermanentRuntimeError, match=r"deployments\.apps is forbidden"):
        world.observe()
