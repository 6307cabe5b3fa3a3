"""The reconciler on Kubernetes: objects deleted or edited by hand come back as rendered, objects of Pareto's that
no endpoint wants are removed, and everything without Pareto's labels is left alone. The real Celery task
functions run here directly; what they enqueue is read back from the Redis broker."""

from __future__ import annotations

from apps.endpoints import tasks
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.runtime import manifests as m
from apps.endpoints.tests.fakes import queued_tasks
from apps.inventory.models import Cluster

from .conftest import fresh
from .test_lifecycle_rayservice import ready


def reconcile(world) -> None:
    tasks.cluster_reconcile(world.cluster.pk)


def test_a_rayservice_deleted_by_hand_is_created_again(world, apiserver, operator):
    endpoint = ready(world, operator)
    apiserver.remove("RayService", endpoint.app_name, "pareto-team-a")
    reconcile(world)
    assert [t.args for t in queued_tasks("endpoints.cluster_apply")] == [[world.cluster.pk]]
    (repair,) = Operation.objects.filter(kind=Operation.Kind.RECONCILE)
    assert f"{endpoint.app_name} (team-a/chat) is missing" in repair.message
    tasks.cluster_apply(world.cluster.pk)
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is not None
    operator.step(2)
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.READY
    world.refresh()
    assert world.cluster.last_reconciled_at is not None


def test_a_rayservice_edited_by_hand_is_restored_to_the_rendered_spec(world, apiserver, operator):
    endpoint = ready(world, operator)

    def edit(obj):
        worker = obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
        worker["image"] = "someone/else:latest"
        worker["resources"]["limits"]["nvidia.com/gpu"] = "8"

    apiserver.edit("RayService", endpoint.app_name, "pareto-team-a", edit)
    operator.step(2)  # KubeRay rolls the edit out
    reconcile(world)
    (repair,) = Operation.objects.filter(kind=Operation.Kind.RECONCILE)
    assert "differs from its desired spec" in repair.message
    assert queued_tasks("endpoints.cluster_apply")
    tasks.cluster_apply(world.cluster.pk)
    live = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")
    worker = live["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["image"] == world.cluster.kube_ray_image
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert live["spec"] == m.rayservice_manifest(fresh(endpoint))["spec"]
    operator.step(2)
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.READY


def test_a_hand_edit_kuberay_refuses_is_repaired_not_blamed_on_the_endpoint(world, apiserver, operator):
    endpoint = ready(world, operator)

    def break_it(obj):
        obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = 5

    apiserver.edit("RayService", endpoint.app_name, "pareto-team-a", break_it)
    operator.step()
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a")["status"]["conditions"][0]["reason"] == (
        "ValidationFailed"
    )
    result = world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    assert endpoint.state_message.startswith("Changed on the cluster and failing there; restoring it:")
    assert result.needs_apply
    world.apply()
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.state_message) == (Endpoint.State.READY, "Ready.")


def test_annotations_removed_by_hand_come_back(world, apiserver, operator):
    """Ownership is in the labels; the owner annotation and generation are restored like the spec."""
    endpoint = ready(world, operator)
    apiserver.edit("RayService", endpoint.app_name, "pareto-team-a", lambda o: o["metadata"]["annotations"].clear())
    reconcile(world)
    tasks.cluster_apply(world.cluster.pk)
    annotations = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")["metadata"]["annotations"]
    assert annotations[m.OWNER_ANNOTATION] == "team-a/chat"


def test_an_object_of_paretos_that_no_endpoint_wants_is_removed(world, apiserver, operator):
    endpoint = ready(world, operator)
    stray = m.rayservice_manifest(fresh(endpoint))
    stray["metadata"]["name"] = "pareto-999"
    stray["metadata"]["labels"][m.ENDPOINT_LABEL] = "999"
    apiserver.put(stray)
    result = world.observe()
    assert result.needs_apply
    assert "RayService pareto-team-a/pareto-999 is Pareto's but no endpoint wants it" in result.drift
    world.apply()
    assert apiserver.get("RayService", "pareto-999", "pareto-team-a")["metadata"]["deletionTimestamp"]
    operator.step()
    assert apiserver.get("RayService", "pareto-999", "pareto-team-a") is None
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is not None


def test_objects_without_paretos_labels_are_never_touched(world, apiserver, operator):
    endpoint = ready(world, operator)
    foreign = m.rayservice_manifest(fresh(endpoint))
    foreign["metadata"] = {"name": "research-llm", "namespace": "pareto-team-a", "labels": {"team": "research"}}
    apiserver.put(foreign)
    another_cluster = m.rayservice_manifest(fresh(endpoint))
    another_cluster["metadata"]["name"] = "pareto-777"
    another_cluster["metadata"]["labels"][m.CLUSTER_LABEL] = "4242"  # another Pareto cluster's
    apiserver.put(another_cluster)
    result = world.observe()
    assert (result.needs_apply, result.drift) == (False, ())
    world.apply()
    assert not apiserver.get("RayService", "research-llm", "pareto-team-a")["metadata"].get("deletionTimestamp")
    assert not apiserver.get("RayService", "pareto-777", "pareto-team-a")["metadata"].get("deletionTimestamp")
    assert not apiserver.asked("DELETE")


def test_a_foreign_object_under_an_endpoints_name_fails_that_endpoint_only(world, apiserver, operator):
    first = world.request(name="first")
    second = world.request(name="second")
    squatter = m.rayservice_manifest(fresh(second))
    squatter["metadata"]["labels"] = {"owner": "someone"}
    world.apply()  # creates the namespace and both RayServices
    apiserver.remove("RayService", second.app_name, "pareto-team-a")
    apiserver.put(squatter)
    Endpoint.objects.filter(pk=second.pk).update(state=Endpoint.State.APPROVED)
    world.apply()
    operator.step(2)
    world.observe()
    second = fresh(second)
    assert second.state == Endpoint.State.FAILED
    assert "already exists and is not Pareto's" in second.state_message
    assert fresh(first).state == Endpoint.State.READY
    # The squatter is still exactly as it was.
    assert apiserver.get("RayService", second.app_name, "pareto-team-a")["metadata"]["labels"] == {"owner": "someone"}


def test_reconcile_all_covers_kubernetes_clusters(world, apiserver):
    other = Cluster.objects.create(name="laptop", runtime=Cluster.Runtime.RAY, ray_dashboard_url="http://x")
    assert tasks.reconcile_all() == 2
    assert sorted(t.args[0] for t in queued_tasks("endpoints.cluster_reconcile")) == sorted(
        [world.cluster.pk, other.pk]
    )
