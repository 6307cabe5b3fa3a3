"""The plain vLLM flavour for clusters without KubeRay: a Deployment, a Service and, when the endpoint may scale,
an autoscaling/v2 HorizontalPodAutoscaler, driven through the same lifecycle."""

from __future__ import annotations

import pytest

from apps.endpoints import services, tasks
from apps.endpoints.models import Endpoint
from apps.endpoints.runtime import manifests as m
from apps.endpoints.selectors import reserved_gpus
from apps.inventory.models import Cluster

from .conftest import fresh


@pytest.fixture
def world(world, apiserver):
    world.cluster.kube_flavour = Cluster.KubeFlavour.DEPLOYMENT
    world.cluster.save()
    apiserver.kuberay = False  # the point of this flavour: no KubeRay on the cluster
    return world


def ready(world, operator, **kw) -> Endpoint:
    endpoint = world.request(**kw)
    world.apply()
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY, endpoint.state_message
    return endpoint


def test_a_deployment_and_a_service_serve_the_model(world, apiserver, operator):
    endpoint = world.request(engine_args={"enable_prefix_caching": False, "gpu_memory_utilization": 0.9})
    world.apply()
    deployment = apiserver.get("Deployment", endpoint.app_name, "pareto-team-a")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    args = container["args"]
    assert args[args.index("--model") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--max-model-len") + 1] == str(fresh(endpoint).max_model_len)
    assert args[args.index("--served-model-name") + 1] == fresh(endpoint).served_model_id
    assert "--no-enable-prefix-caching" in args
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.9"
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8000}
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert deployment["spec"]["replicas"] == 1
    service = apiserver.get("Service", endpoint.app_name, "pareto-team-a")
    assert service["spec"]["selector"] == {m.MANAGED_BY: "pareto", m.ENDPOINT_LABEL: str(endpoint.pk)}
    assert set(service["spec"]["selector"].items()) <= set(deployment["spec"]["template"]["metadata"]["labels"].items())
    assert apiserver.get("HorizontalPodAutoscaler", endpoint.app_name, "pareto-team-a") is None

    operator.step()  # the controller sees the new generation: 0 available
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.PROVISIONING
    assert "0 of 1 replicas available." in endpoint.state_message
    operator.step()
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    assert endpoint.base_url == f"http://{endpoint.app_name}.pareto-team-a.svc.cluster.local:8000/v1"


def test_an_endpoint_that_may_scale_gets_an_hpa_and_reconcile_leaves_its_replicas_alone(world, apiserver, operator):
    endpoint = ready(world, operator, min_replicas=2, max_replicas=4, gpus_per_replica=1)
    hpa = apiserver.get("HorizontalPodAutoscaler", endpoint.app_name, "pareto-team-a")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": endpoint.app_name}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    # The HPA scales out; that is not drift, and no apply puts the replicas back.
    apiserver.edit("Deployment", endpoint.app_name, "pareto-team-a", lambda d: d["spec"].update(replicas=3))
    operator.step(2)
    result = world.observe()
    assert (result.needs_apply, result.drift) == (False, ())
    assert fresh(endpoint).observed_replicas == 3
    world.apply()
    assert apiserver.get("Deployment", endpoint.app_name, "pareto-team-a")["spec"]["replicas"] == 3


def test_scaling_to_a_fixed_size_removes_the_hpa(world, apiserver, operator):
    endpoint = ready(world, operator, min_replicas=1, max_replicas=2, gpus_per_replica=1)
    services.endpoint_update(actor=world.lead, endpoint=endpoint, min_replicas=2, max_replicas=2)
    world.apply()
    assert apiserver.get("HorizontalPodAutoscaler", endpoint.app_name, "pareto-team-a")["metadata"]["deletionTimestamp"]
    assert apiserver.get("Deployment", endpoint.app_name, "pareto-team-a")["spec"]["replicas"] == 2
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    assert apiserver.get("HorizontalPodAutoscaler", endpoint.app_name, "pareto-team-a") is None


def test_a_rollout_past_its_progress_deadline_fails_the_endpoint(world, apiserver, operator):
    endpoint = world.request()
    operator.behaviour[endpoint.app_name] = "crashloop"
    world.apply()
    assert apiserver.get("Deployment", endpoint.app_name, "pareto-team-a")["spec"]["progressDeadlineSeconds"] == 600
    operator.step(2)
    world.observe()
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "ProgressDeadlineExceeded" in endpoint.state_message
    assert "has timed out progressing" in endpoint.state_message


def test_delete_removes_deployment_service_and_hpa_and_waits_for_them(world, apiserver, operator):
    endpoint = ready(world, operator, min_replicas=1, max_replicas=2, gpus_per_replica=1)
    services.endpoint_delete(actor=world.lead, endpoint=endpoint)
    world.apply()
    deleted = {r.path.rsplit("/", 2)[-2] for r in apiserver.asked("DELETE")}
    assert deleted == {"deployments", "services", "horizontalpodautoscalers"}
    assert all(r.query["propagationPolicy"] == "Foreground" for r in apiserver.asked("DELETE"))
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.DELETING
    assert reserved_gpus(team=world.team, gpu_type=world.gpu) == 2
    operator.step()
    world.observe()
    assert fresh(endpoint).state == Endpoint.State.DELETED
    assert reserved_gpus(team=world.team, gpu_type=world.gpu) == 0
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler"):
        assert apiserver.get(kind, endpoint.app_name, "pareto-team-a") is None


def test_a_service_deleted_by_hand_comes_back(world, apiserver, operator):
    endpoint = ready(world, operator)
    apiserver.remove("Service", endpoint.app_name, "pareto-team-a")
    tasks.cluster_reconcile(world.cluster.pk)
    tasks.cluster_apply(world.cluster.pk)
    assert apiserver.get("Service", endpoint.app_name, "pareto-team-a") is not None


def test_an_edited_service_is_restored_keeping_its_cluster_ip(world, apiserver, operator):
    endpoint = ready(world, operator)
    ip = apiserver.get("Service", endpoint.app_name, "pareto-team-a")["spec"]["clusterIP"]
    apiserver.edit("Service", endpoint.app_name, "pareto-team-a", lambda s: s["spec"]["ports"][0].update(port=9999))
    assert world.observe().needs_apply
    world.apply()
    service = apiserver.get("Service", endpoint.app_name, "pareto-team-a")
    assert service["spec"]["ports"][0]["port"] == 8000
    assert service["spec"]["clusterIP"] == ip


def test_the_ingress_strips_the_endpoint_prefix_for_vllm(world, apiserver, operator):
    world.cluster.kube_ingress_host = "llm.example.com"
    world.cluster.save()
    endpoint = ready(world, operator)
    ingress = apiserver.get("Ingress", endpoint.app_name, "pareto-team-a")
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/team-a/chat(/|$)(.*)"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/rewrite-target"] == "/$2"
    assert path["backend"]["service"]["name"] == endpoint.app_name
    assert endpoint.base_url == "https://llm.example.com/team-a/chat/v1"


def test_switching_a_cluster_to_this_flavour_replaces_the_rayservices(world, apiserver, operator):
    world.cluster.kube_flavour = Cluster.KubeFlavour.RAYSERVICE
    world.cluster.save()
    apiserver.install_kuberay()
    endpoint = ready(world, operator)
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is not None
    Cluster.objects.filter(pk=world.cluster.pk).update(kube_flavour=Cluster.KubeFlavour.DEPLOYMENT)
    result = world.observe()
    assert result.needs_apply
    world.apply()
    operator.step(2)
    world.observe()
    assert apiserver.get("RayService", endpoint.app_name, "pareto-team-a") is None
    assert apiserver.get("Deployment", endpoint.app_name, "pareto-team-a") is not None
    assert fresh(endpoint).state == Endpoint.State.READY
