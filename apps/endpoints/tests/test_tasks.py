"""The Celery tasks, called as plain functions (the worker end-to-end is tested elsewhere), with the fake runtime
at the seam and the real Redis: poll tokens live there, and the next steps are read back from the broker queue."""

from __future__ import annotations

import datetime as dt

import pytest

from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.core.health import redis_client
from apps.endpoints import lifecycle, services, tasks
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.runtime.base import Phase, TransientRuntimeError
from apps.endpoints.tests.fakes import clear_queue, install_fake_runtime, queued_tasks
from apps.inventory.models import Cluster
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.tests.factories import GpuQuotaFactory


@pytest.fixture
def fake(monkeypatch):
    return install_fake_runtime(monkeypatch)


@pytest.fixture
def world(team_a, lead_user, settings):
    settings.PARETO_POLL_INITIAL_SECONDS = 10
    settings.PARETO_POLL_MAX_SECONDS = 40
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory(name="east")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=8)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=8)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu)
    key = tasks._token_key(cluster.pk)
    redis_client().delete(key)
    clear_queue()
    yield {"team": team_a, "cluster": cluster, "model": model, "lead": Actor(user=lead_user), "key": key}
    redis_client().delete(key)
    clear_queue()


def request(world, name="chat"):
    return services.endpoint_request(
        actor=world["lead"], team=world["team"], name=name, model=world["model"], cluster=world["cluster"]
    )


def token(world) -> str | None:
    raw = redis_client().get(world["key"])
    return raw.decode() if raw is not None else None


def polls():
    return [t for t in queued_tasks("endpoints.cluster_poll")]


def eta_in(task) -> float:
    eta = dt.datetime.fromisoformat(task.eta)
    return (eta - dt.datetime.now(dt.UTC)).total_seconds()


def provisioning(world, fake):
    endpoint = request(world)
    lifecycle.cluster_apply(cluster_id=world["cluster"].pk)
    fake.report(endpoint, Phase.DEPLOYING, message="starting")
    return endpoint


# --- polling ---------------------------------------------------------------------------------------------------
def test_starting_a_chain_stores_a_token_and_queues_the_first_poll(world):
    tasks.start_polling(world["cluster"].pk)
    (first,) = polls()
    assert first.args == [world["cluster"].pk, token(world), 0]
    assert 8 < eta_in(first) <= 10
    assert redis_client().ttl(world["key"]) > 40  # outlives the longest gap between two polls


def test_a_newer_chain_stops_an_older_one(world, fake):
    provisioning(world, fake)
    tasks.start_polling(world["cluster"].pk)
    tasks.start_polling(world["cluster"].pk)
    old, new = polls()
    assert old.args[1] != new.args[1] and token(world) == new.args[1]
    clear_queue()

    tasks.cluster_poll(*old.args)
    assert fake.observe_calls == 0  # the old chain looked at its token and stopped
    assert polls() == []

    tasks.cluster_poll(*new.args)
    assert fake.observe_calls == 1
    (following,) = polls()
    assert following.args == [world["cluster"].pk, new.args[1], 1]


def test_a_chain_whose_token_expired_stops(world, fake):
    provisioning(world, fake)
    tasks.cluster_poll(world["cluster"].pk, "no-longer-known", 0)
    assert (fake.observe_calls, polls()) == (0, [])


def test_polls_back_off_up_to_the_maximum_while_something_is_in_transit(world, fake):
    provisioning(world, fake)
    redis_client().set(world["key"], "tok")
    delays = []
    for attempt in range(4):
        tasks.cluster_poll(world["cluster"].pk, "tok", attempt)
        (following,) = polls()
        assert following.args == [world["cluster"].pk, "tok", attempt + 1]
        delays.append(eta_in(following))
        clear_queue()
    # 10 s initial: 20, 40, then capped at 40.
    assert [round(d / 10) * 10 for d in delays] == [20, 40, 40, 40]


def test_a_poll_that_finds_work_for_an_apply_hands_over_to_cluster_apply(world, fake):
    request(world)  # a pending apply nobody carried out
    redis_client().set(world["key"], "tok")
    tasks.cluster_poll(world["cluster"].pk, "tok", 3)
    assert [t.args for t in queued_tasks("endpoints.cluster_apply")] == [[world["cluster"].pk]]
    assert polls() == []  # the apply starts a fresh chain


def test_a_poll_with_nothing_in_transit_ends_the_chain(world, fake):
    endpoint = provisioning(world, fake)
    fake.report(endpoint, Phase.RUNNING, replicas=1)
    redis_client().set(world["key"], "tok")
    tasks.cluster_poll(world["cluster"].pk, "tok", 0)
    assert Endpoint.objects.get(pk=endpoint.pk).state == Endpoint.State.READY
    assert queued_tasks() == []


def test_a_poll_keeps_going_when_the_runtime_does_not_answer(world, fake):
    provisioning(world, fake)
    fake.observe_errors.append(TransientRuntimeError("timed out"))
    redis_client().set(world["key"], "tok")
    tasks.cluster_poll(world["cluster"].pk, "tok", 0)
    assert [p.args for p in polls()] == [[world["cluster"].pk, "tok", 1]]


# --- cluster_apply ---------------------------------------------------------------------------------------------
def test_cluster_apply_task_applies_and_starts_a_fresh_chain(world, fake):
    endpoint = request(world)
    redis_client().set(world["key"], "older-chain")
    tasks.cluster_apply(world["cluster"].pk)
    assert Endpoint.objects.get(pk=endpoint.pk).state == Endpoint.State.PROVISIONING
    assert fake.applies == [[endpoint.app_name]]
    (first,) = polls()
    assert token(world) not in (None, "older-chain")
    assert first.args == [world["cluster"].pk, token(world), 0]


def test_cluster_apply_task_raises_a_transient_error_for_celery_to_retry(world, fake):
    endpoint = request(world)
    fake.apply_errors.append(TransientRuntimeError("503"))
    with pytest.raises(TransientRuntimeError):
        tasks.cluster_apply(world["cluster"].pk)
    assert Operation.objects.get(endpoint=endpoint).attempts == 1
    assert polls() == []


def test_cluster_apply_task_for_a_cluster_that_is_gone_does_nothing(world, fake):
    tasks.cluster_apply(Cluster.objects.order_by("-pk").first().pk + 1000)
    assert (fake.applies, queued_tasks()) == ([], [])


# --- reconcile -------------------------------------------------------------------------------------------------
def test_reconcile_records_drift_and_asks_for_an_apply(world, fake):
    endpoint = provisioning(world, fake)
    fake.report(endpoint, Phase.RUNNING)
    lifecycle.cluster_observe(cluster_id=world["cluster"].pk)
    fake.lose(endpoint)
    tasks.cluster_reconcile(world["cluster"].pk)
    op = Operation.objects.get(kind=Operation.Kind.RECONCILE)
    assert (op.cluster_id, op.endpoint_id, op.state) == (world["cluster"].pk, None, "succeeded")
    assert op.message == f"Re-applied the desired set: {endpoint.app_name} (team-a/chat) is missing"
    assert [t.args for t in queued_tasks("endpoints.cluster_apply")] == [[world["cluster"].pk]]


def test_reconcile_of_a_settled_cluster_records_and_queues_nothing(world, fake):
    endpoint = provisioning(world, fake)
    fake.report(endpoint, Phase.RUNNING)
    lifecycle.cluster_observe(cluster_id=world["cluster"].pk)
    tasks.cluster_reconcile(world["cluster"].pk)
    assert not Operation.objects.filter(kind=Operation.Kind.RECONCILE).exists()
    assert queued_tasks() == []


def test_reconcile_starts_polling_only_when_no_chain_is_running(world, fake):
    provisioning(world, fake)
    redis_client().set(world["key"], "running-chain")
    tasks.cluster_reconcile(world["cluster"].pk)
    assert queued_tasks() == []
    redis_client().delete(world["key"])
    tasks.cluster_reconcile(world["cluster"].pk)
    (first,) = polls()
    assert first.args == [world["cluster"].pk, token(world), 0]


def test_reconcile_gives_up_quietly_when_the_runtime_does_not_answer(world, fake):
    provisioning(world, fake)
    fake.observe_errors.append(TransientRuntimeError("timed out"))
    tasks.cluster_reconcile(world["cluster"].pk)
    assert queued_tasks() == []


def test_reconcile_all_fans_out_to_the_clusters_it_can_drive(world):
    other_ray = ClusterFactory(name="west")
    aks = ClusterFactory(name="aks", runtime=Cluster.Runtime.KUBERNETES, ray_dashboard_url="")
    ClusterFactory(name="slurm", runtime="slurm", ray_dashboard_url="")
    assert tasks.reconcile_all() == 3
    assert sorted(t.args for t in queued_tasks("endpoints.cluster_reconcile")) == [
        [world["cluster"].pk],
        [other_ray.pk],
        [aks.pk],
    ]
