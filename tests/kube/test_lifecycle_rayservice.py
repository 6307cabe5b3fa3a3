"""The endpoint lifecycle on a Kubernetes cluster with KubeRay: the real services, lifecycle and `kubernetes` client
against the fake API server, with the simulated operator playing KubeRay."""

from __future__ import annotations

import datetime as dt

import yaml
from django.utils import timezone

from apps.endpoints import services
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.runtime import manifests as m
from apps.endpoints.runtime.serve_config import serve_application
from apps.endpoints.selectors import reserved_gpus

from .conftest import fresh
from .operator import SimulatedOperator


def ready(world, operator: SimulatedOperator, name: str = "chat", **kw) -> Endpoint:
    endpoint = world.request(name=name, **kw)
    world.apply()
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY, endpoint.state_message
    return endpoint


def test_apply_creates_the_team_namespace_quota_and_a_rayservice(world, apiserver):
    endpoint = world.request()
    assert endpoint.state == Endpoint.State.APPROVED
    world.apply()
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING

    namespace = apiserver.get("Namespace", "pareto-team-a")
    assert namespace["metadata"]["labels"][m.MANAGED_BY] == "pareto"
    assert namespace["metadata"]["labels"][m.TEAM_LABEL] == "team-a"
    quota = apiserver.get("ResourceQuota", "pareto-gpu-quota", "pareto-team-a")
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "16", "limits.nvidia.com/gpu": "16"}
    limits = apiserver.get("LimitRange", "pareto-gpu-limits", "pareto-team-a")
    assert limits["spec"]["limits"] == [{"type": "Container", "max": {"nvidia.com/gpu": "8"}}]

    rayservice = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")
    labels = rayservice["metadata"]["labels"]
    assert labels[m.ENDPOINT_LABEL] == str(endpoint.pk)
    assert labels[m.CLUSTER_LABEL] == str(world.cluster.pk)
    assert rayservice["metadata"]["annotations"][m.OWNER_ANNOTATION] == "team-a/chat"
    assert rayservice["metadata"]["annotations"]["ray.io/initializing-timeout"] == "600s"
    # The serve config is the Ray runtime's application, rendered by the same function.
    endpoint = fresh(endpoint)
    assert yaml.safe_load(rayservice["spec"]["serveConfigV2"]) == {"applications": [serve_application(endpoint)]}
    cluster_config = rayservice["spec"]["rayClusterConfig"]
    assert cluster_config["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    (workers,) = cluster_config["workerGroupSpecs"]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (1, 1)
    (worker,) = workers["template"]["spec"]["containers"]
    assert worker["image"] == world.cluster.kube_ray_image
    assert worker["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    # Everything went through typed calls and CustomObjects: JSON bodies, no Content-Type games.
    assert {r.content_type for r in apiserver.asked("POST")} == {""}


def test_ready_when_kuberay_reports_ready_with_the_in_cluster_url(world, apiserver, operator):
    endpoint = world.request()
    world.apply()
    operator.step()  # Initializing, pending RayCluster
    result = world.observe()
    assert result.in_transit
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.PROVISIONING
    assert "Initializing: RayService is initializing" in endpoint.state_message

    operator.step()
    result = world.observe()
    endpoint = fresh(endpoint)
    assert (result.in_transit, result.needs_apply) == (False, False)
    assert endpoint.state == Endpoint.State.READY
    assert endpoint.base_url == (
        f"http://{endpoint.app_name}-serve-svc.pareto-team-a.svc.cluster.local:8000/team-a/chat/v1"
    )
    assert endpoint.observed_replicas == 1
    assert list(Operation.objects.filter(endpoint=endpoint).values_list("kind", "state")) == [("apply", "succeeded")]


def test_an_ingress_host_gives_the_external_url_and_an_ingress(world, apiserver, operator):
    world.cluster.kube_ingress_host = "llm.example.com"
    world.cluster.save()
    endpoint = ready(world, operator)
    assert endpoint.base_url == "https://llm.example.com/team-a/chat/v1"
    ingress = apiserver.get("Ingress", endpoint.app_name, "pareto-team-a")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "llm.example.com"
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/team-a/chat", "Prefix")
    assert path["backend"]["service"] == {"name": f"{endpoint.app_name}-serve-svc", "port": {"number": 8000}}


def test_an_update_rolls_out_in_place_and_becomes_ready_again(world, apiserver, operator):
    endpoint = ready(world, operator)
    services.endpoint_update(actor=world.lead, endpoint=endpoint, engine_args={"max_num_seqs": 64})
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.UPDATING
    world.apply()
    rayservice = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")
    assert rayservice["metadata"]["generation"] == 2
    assert "max_num_seqs: 64" in rayservice["spec"]["serveConfigV2"]
    assert rayservice["metadata"]["annotations"][m.GENERATION_ANNOTATION] == str(endpoint.generation)

    operator.step()  # KubeRay saw the new spec: the application is DEPLOYING on the active cluster
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.UPDATING
    operator.step()
    world.observe()
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.state_message) == (Endpoint.State.READY, "Change rolled out.")
    assert endpoint.observed_generation == endpoint.generation


def test_scaling_out_turns_on_autoscaling_as_a_cluster_upgrade(world, apiserver, operator):
    endpoint = ready(world, operator)
    services.endpoint_update(actor=world.lead, endpoint=endpoint, min_replicas=1, max_replicas=3)
    world.apply()
    operator.step()
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.UPDATING  # UpgradeInProgress: the old cluster still serves
    operator.step()
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.READY
    config = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")["spec"]["rayClusterConfig"]
    assert config["enableInTreeAutoscaling"] is True
    workers = config["workerGroupSpecs"][0]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (1, 3)
    serve = yaml.safe_load(apiserver.get("RayService", endpoint.app_name, "pareto-team-a")["spec"]["serveConfigV2"])
    (deployment,) = serve["applications"][0]["deployments"]
    assert deployment["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}


def test_delete_waits_until_the_rayservice_is_gone_before_freeing_the_quota(world, apiserver, operator):
    endpoint = ready(world, operator)
    services.endpoint_delete(actor=world.lead, endpoint=endpoint)
    world.apply()
    # Foreground deletion: the RayService stays, being deleted, until KubeRay and the GC let it go.
    rayservice = apiserver.get("RayService", endpoint.app_name, "pareto-team-a")
    assert rayservice["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in rayservice["metadata"]["finalizers"]
    (delete,) = apiserver.asked("DELETE", endpoint.app_name)
    assert delete.query["propagationPolicy"] == "Foreground"

    result = world.observe()
    assert (result.in_transit, result.needs_apply) == (True, False)
    assert fresh(endpoint).state == Endpoint.State.DELETING
    assert reserved_gpus(team=world.team, gpu_type=world.gpu) == 2

    operator.step()
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.DELETED
    assert reserved_gpus(team=world.team, gpu_type=world.gpu) == 0
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is None
    # The team's namespace and quota stay: the team may come back.
    assert apiserver.get("Namespace", "pareto-team-a") is not None


def test_validation_failed_fails_the_endpoint_with_kuberays_message(world, apiserver, operator):
    endpoint = world.request()
    operator.behaviour[endpoint.app_name] = "reject"
    world.apply()
    operator.step()
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert endpoint.state_message == (
        "The runtime could not start it: ValidationFailed: The RayService spec is invalid: resource fields should "
        "not be set in both rayStartParams and Resources for gpu group; please use only one"
    )
    assert reserved_gpus(team=world.team, gpu_type=world.gpu) == 0


def test_initializing_timeout_fails_the_endpoint_and_the_rayservice_is_removed(world, apiserver, operator):
    endpoint = world.request()
    operator.behaviour[endpoint.app_name] = "initializing_timeout"
    world.apply()
    operator.step(2)
    result = world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert endpoint.state_message.startswith("The runtime could not start it: InitializingTimeout:")
    assert "600s" in endpoint.state_message
    assert result.needs_apply
    world.apply()  # a failed endpoint holds nothing: its RayService goes
    operator.step()
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is None


def test_a_serve_application_that_fails_to_deploy_fails_the_endpoint(world, apiserver, operator):
    endpoint = world.request()
    operator.behaviour[endpoint.app_name] = "deploy_failed"
    world.apply()
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "no kernel image is available" in endpoint.state_message


def test_paretos_own_deadline_fails_an_endpoint_kuberay_keeps_initializing(world, apiserver, operator):
    endpoint = world.request()
    operator.behaviour[endpoint.app_name] = "stuck"
    world.apply()
    operator.step(2)
    Endpoint.objects.filter(pk=endpoint.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "Pareto's deadline" in endpoint.state_message
    assert "RayService is initializing" in endpoint.state_message


def test_retry_after_failure_makes_a_new_rayservice(world, apiserver, operator):
    endpoint = world.request()
    operator.behaviour[endpoint.app_name] = "initializing_timeout"
    world.apply()
    operator.step(2)
    world.observe()
    world.apply()
    operator.step()
    operator.behaviour.pop(endpoint.app_name)
    services.endpoint_retry(actor=world.lead, endpoint=fresh(endpoint))
    world.apply()
    operator.step(2)
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.READY


def test_unhealthy_application_is_shown_on_a_ready_endpoint(world, apiserver, operator):
    endpoint = ready(world, operator)
    operator.behaviour[endpoint.app_name] = "unhealthy"
    operator.step()
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    assert endpoint.state_message.startswith("Unhealthy:")
    assert "replica health check failed" in endpoint.state_message


def test_without_kuberay_the_apply_says_so_and_fails_the_request(world, apiserver):
    apiserver.kuberay = False
    endpoint = world.request()
    world.apply()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "KubeRay is not installed" in endpoint.state_message
    assert "rayservices.ray.io" in endpoint.state_message
