"""Team namespaces on Kubernetes follow the GPU quotas admins approve, and namespaces that are not Pareto's are
never touched."""

from __future__ import annotations

from apps.endpoints import kube_tasks, services
from apps.endpoints.models import Endpoint
from apps.endpoints.runtime import manifests as m
from apps.endpoints.tests.fakes import queued_tasks
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams import services as team_services
from apps.teams.models import GpuQuota
from apps.teams.tests.factories import TeamFactory

from .conftest import fresh


def hard(apiserver, namespace="pareto-team-a"):
    quota = apiserver.get("ResourceQuota", "pareto-gpu-quota", namespace)
    return None if quota is None else quota["spec"]["hard"]


def test_changing_a_quota_enqueues_the_sync_once_committed_and_the_sync_updates_the_resourcequota(
    world, apiserver, django_capture_on_commit_callbacks
):
    world.request()
    world.apply()
    assert hard(apiserver) == {"requests.nvidia.com/gpu": "16", "limits.nvidia.com/gpu": "16"}

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        team_services.quota_set(actor=world.admin, team=world.team, gpu_type=world.gpu, limit=24)
        assert queued_tasks("endpoints.kube_team_sync") == []  # nothing leaves before the commit
    for callback in callbacks:
        callback()
    assert [t.args for t in queued_tasks("endpoints.kube_team_sync")] == [[world.team.pk]]

    assert kube_tasks.kube_team_sync(world.team.pk) == [world.cluster.pk]
    assert hard(apiserver) == {"requests.nvidia.com/gpu": "24", "limits.nvidia.com/gpu": "24"}
    (update,) = [r for r in apiserver.asked("PUT", "resourcequotas")]
    assert update.body["metadata"]["resourceVersion"]  # a conditional replace


def test_the_quota_counts_only_gpu_types_the_cluster_has_and_never_less_than_what_is_held(world, apiserver):
    elsewhere = GpuTypeFactory(sku="A100-80GB")
    GpuQuota.objects.create(team=world.team, gpu_type=elsewhere, limit=40)  # not on this cluster
    endpoint = world.request(gpus_per_replica=4, max_replicas=2)
    world.apply()
    assert hard(apiserver)["requests.nvidia.com/gpu"] == "16"
    # An admin lowers the quota below what the team's endpoint holds: its Pods must still fit.
    team_services.quota_set(actor=world.admin, team=world.team, gpu_type=world.gpu, limit=2)
    kube_tasks.kube_team_sync(world.team.pk)
    assert hard(apiserver)["requests.nvidia.com/gpu"] == str(fresh(endpoint).reserved_gpus) == "8"


def test_deleting_the_quota_brings_the_namespace_quota_to_zero(world, apiserver, django_capture_on_commit_callbacks):
    kube_tasks.kube_team_sync(world.team.pk)
    assert hard(apiserver)["requests.nvidia.com/gpu"] == "16"
    quota = GpuQuota.objects.get(team=world.team, gpu_type=world.gpu)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        team_services.quota_delete(actor=world.admin, quota=quota)
    assert callbacks
    kube_tasks.kube_team_sync(world.team.pk)
    assert hard(apiserver) == {"requests.nvidia.com/gpu": "0", "limits.nvidia.com/gpu": "0"}


def test_a_team_without_gpus_here_gets_no_namespace(world, apiserver):
    lonely = TeamFactory(slug="lonely")
    assert kube_tasks.kube_team_sync(lonely.pk) == []
    assert apiserver.get("Namespace", "pareto-lonely") is None


def test_approving_an_endpoint_over_quota_raises_the_namespace_quota_too(
    world, apiserver, django_capture_on_commit_callbacks
):
    endpoint = world.request(name="big", gpus_per_replica=8, max_replicas=3)
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.endpoint_approve(actor=world.admin, endpoint=endpoint)
    for callback in callbacks:
        callback()
    assert queued_tasks("endpoints.kube_team_sync")
    world.apply()
    assert hard(apiserver)["requests.nvidia.com/gpu"] == "24"


def test_the_operator_cannot_start_pods_over_the_namespace_quota_until_it_is_raised(world, apiserver, operator):
    endpoint = world.request()
    world.apply()
    # Someone shrank the namespace quota by hand; KubeRay's worker Pods are refused.
    apiserver.edit(
        "ResourceQuota",
        "pareto-gpu-quota",
        "pareto-team-a",
        lambda q: q["spec"]["hard"].update({"requests.nvidia.com/gpu": "1"}),
    )
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.PROVISIONING
    assert "exceeded quota: pareto-gpu-quota" in endpoint.state_message
    # The periodic namespace sync restores the approved quota, and the Pods start.
    assert kube_tasks.kube_sync_namespaces(world.cluster.pk) == ["pareto-team-a"]
    assert hard(apiserver)["requests.nvidia.com/gpu"] == "16"
    operator.step()
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.READY


def test_a_namespace_that_is_not_paretos_is_never_touched(world, apiserver):
    apiserver.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pareto-team-a", "labels": {}}})
    before = apiserver.get("Namespace", "pareto-team-a")
    endpoint = world.request()
    world.apply()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.PROVISIONING
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "Namespace pareto-team-a exists and is not managed by Pareto" in endpoint.state_message
    assert apiserver.get("Namespace", "pareto-team-a") == before
    assert apiserver.get("ResourceQuota", "pareto-gpu-quota", "pareto-team-a") is None
    assert not apiserver.asked("PUT") and not apiserver.asked("PATCH")
    kube_tasks.kube_team_sync(world.team.pk)
    kube_tasks.kube_sync_namespaces(world.cluster.pk)
    assert apiserver.get("Namespace", "pareto-team-a") == before


def test_another_teams_namespace_of_paretos_is_not_taken_over(world, apiserver):
    apiserver.put(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "pareto-team-a", "labels": {m.MANAGED_BY: m.MANAGER, m.TEAM_LABEL: "someone-else"}},
        }
    )
    endpoint = world.request()
    world.apply()
    world.observe()
    assert "is not managed by Pareto" in fresh(endpoint).state_message


def test_the_limitrange_can_be_turned_off(world, apiserver, settings):
    settings.PARETO_KUBE_MAX_GPUS_PER_POD = 0
    kube_tasks.kube_team_sync(world.team.pk)
    assert apiserver.get("Namespace", "pareto-team-a") is not None
    assert apiserver.get("LimitRange", "pareto-gpu-limits", "pareto-team-a") is None
