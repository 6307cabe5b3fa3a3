"""Readiness by watch: the watch task holds a real watch request open on the fake API server while the simulated
operator works in the background; each event makes the lifecycle look. It resumes from the resourceVersion it
reached, and lists again when the server says 410 Gone."""

from __future__ import annotations

from apps.core.health import redis_client
from apps.endpoints import kube_tasks
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.tests.fakes import queued_tasks
from apps.inventory.models import Cluster

from .conftest import fresh, make_cluster
from .test_lifecycle_rayservice import ready


def saved_version(cluster) -> str:
    raw = redis_client().get(kube_tasks._rv_key(cluster))
    return raw.decode() if raw else ""


def watches(apiserver):
    return [r for r in apiserver.asked("GET", "/rayservices") if r.query.get("watch") == "true"]


def lists(apiserver):
    return [r for r in apiserver.asked("GET", "/apis/ray.io/v1/rayservices") if "watch" not in r.query]


def test_an_endpoint_becomes_ready_from_watch_events_without_polling(world, apiserver, operator):
    endpoint = world.request()
    world.apply()
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING
    with operator.running(interval=0.2):
        events = kube_tasks.watch_cluster(world.cluster.pk, seconds=3)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    assert events >= 2  # Initializing, then Ready
    (watch,) = watches(apiserver)
    assert watch.query["labelSelector"] == f"app.kubernetes.io/managed-by=pareto,pareto.dev/cluster={world.cluster.pk}"
    assert watch.query["resourceVersion"] and int(watch.query["timeoutSeconds"]) <= 3
    # Where to resume is kept: the version of the last event seen.
    assert (
        saved_version(world.cluster)
        == apiserver.get("RayService", endpoint.app_name, "pareto-team-a")["metadata"]["resourceVersion"]
    )


def test_the_next_watch_resumes_from_the_saved_version_and_sees_what_happened_between(world, apiserver, operator):
    endpoint = world.request()
    world.apply()
    kube_tasks.watch_cluster(world.cluster.pk, seconds=1)  # nothing moves yet
    version = saved_version(world.cluster)
    assert version
    operator.step(2)  # KubeRay makes it ready while no watch is open
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING
    before = len(lists(apiserver))
    events = kube_tasks.watch_cluster(world.cluster.pk, seconds=1)
    assert watches(apiserver)[-1].query["resourceVersion"] == version
    assert events == 2  # both status changes, replayed
    assert len(lists(apiserver)) == before + events  # one observe per event; the watch itself did not re-list
    assert fresh(endpoint).state == Endpoint.State.READY
    assert int(saved_version(world.cluster)) > int(version)


def test_a_410_gone_lists_again_and_watches_from_the_new_version(world, apiserver, operator):
    endpoint = world.request()
    world.apply()
    kube_tasks.watch_cluster(world.cluster.pk, seconds=1)
    old = saved_version(world.cluster)
    operator.step(2)
    apiserver.compact()  # etcd forgot everything up to now: the saved version is too old
    kube_tasks.watch_cluster(world.cluster.pk, seconds=1)
    first, second = watches(apiserver)[-2:]
    assert first.query["resourceVersion"] == old
    assert int(second.query["resourceVersion"]) > int(old)  # from the fresh list
    assert fresh(endpoint).state == Endpoint.State.READY  # seen through the re-list's observe


def test_a_rayservice_deleted_during_a_watch_is_put_back(world, apiserver, operator):
    endpoint = ready(world, operator)
    kube_tasks.watch_cluster(world.cluster.pk, seconds=1)
    apiserver.remove("RayService", endpoint.app_name, "pareto-team-a")
    assert kube_tasks.watch_cluster(world.cluster.pk, seconds=1) == 1
    assert [t.args for t in queued_tasks("endpoints.cluster_apply")] == [[world.cluster.pk]]
    assert Operation.objects.filter(kind=Operation.Kind.RECONCILE, message__contains="is missing").exists()


def test_one_watch_per_cluster_at_a_time(world, apiserver):
    redis_client().set(kube_tasks._lock_key(world.cluster.pk), "someone", ex=30)
    assert kube_tasks.kube_watch(world.cluster.pk) == 0
    assert not watches(apiserver)


def test_the_watch_task_releases_its_lock(world, apiserver, settings):
    settings.PARETO_KUBE_WATCH_SECONDS = 1
    kube_tasks.kube_watch(world.cluster.pk)
    assert len(watches(apiserver)) == 1
    assert redis_client().get(kube_tasks._lock_key(world.cluster.pk)) is None


def test_beat_starts_a_watch_for_each_kubernetes_cluster(world, apiserver):
    second = make_cluster(name="aks-west")
    Cluster.objects.create(name="laptop", runtime=Cluster.Runtime.RAY, ray_dashboard_url="http://127.0.0.1:8265")
    assert kube_tasks.kube_watch_all() == 2
    assert sorted(t.args[0] for t in queued_tasks("endpoints.kube_watch")) == sorted([world.cluster.pk, second.pk])


def test_a_deployment_cluster_watches_deployments(world, apiserver, operator):
    world.cluster.kube_flavour = Cluster.KubeFlavour.DEPLOYMENT
    world.cluster.save()
    endpoint = world.request()
    world.apply()
    with operator.running(interval=0.2):
        kube_tasks.watch_cluster(world.cluster.pk, seconds=2)
    assert [r for r in apiserver.asked("GET", "/apis/apps/v1/deployments") if r.query.get("watch") == "true"]
    assert fresh(endpoint).state == Endpoint.State.READY
