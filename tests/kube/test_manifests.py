"""Every manifest Pareto renders is valid against the Kubernetes and KubeRay OpenAPI schemas the suite carries
(tests/kube/schemas), in every variant: both flavours, fixed or autoscaled, with and without an ingress host, a
model-hub Secret, a CPU-only cluster."""

from __future__ import annotations

import itertools

import pytest
import yaml

from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.models import Endpoint
from apps.endpoints.runtime import manifests as m
from apps.endpoints.runtime.serve_config import serve_application
from apps.endpoints.tests.factories import EndpointFactory
from apps.inventory.models import Cluster
from apps.inventory.tests.factories import GpuTypeFactory

from .conftest import make_cluster
from .schemas import validate

VARIANTS = list(
    itertools.product(
        (Cluster.KubeFlavour.RAYSERVICE, Cluster.KubeFlavour.DEPLOYMENT),
        ((1, 1), (1, 4)),
        ("", "llm.example.com"),
        ("", "hf-token"),
        (False, True),
    )
)


@pytest.fixture
def gpu(db):
    return GpuTypeFactory(
        sku="A100-80GB", memory_gib=80, node_selector_label="nvidia.com/gpu.product", node_selector_value="NVIDIA-A100"
    )


def endpoint_on(gpu, *, flavour, replicas, ingress, secret, cpu_only, team_a) -> Endpoint:
    cluster = make_cluster(
        name=f"c-{flavour}-{replicas[1]}-{bool(ingress)}-{bool(secret)}-{cpu_only}",
        kube_flavour=flavour,
        kube_ingress_host=ingress,
        kube_hf_token_secret=secret,
        cpu_only=cpu_only,
        secret_env={"hf_token": "PARETO_TEST_HF_TOKEN"},
    )
    model = CatalogModelFactory(source="meta-llama/Llama-3.1-70B-Instruct")
    return EndpointFactory(
        team=team_a,
        cluster=cluster,
        model=model,
        gpu_type=gpu,
        gpus_per_replica=4,
        min_replicas=replicas[0],
        max_replicas=replicas[1],
        max_model_len=8192,
        engine_args={"enable_prefix_caching": True, "enforce_eager": False, "max_num_seqs": 128, "dtype": "bfloat16"},
        state=Endpoint.State.APPROVED,
    )


@pytest.mark.parametrize(("flavour", "replicas", "ingress", "secret", "cpu_only"), VARIANTS)
def test_every_rendered_manifest_fits_the_schemas(gpu, team_a, flavour, replicas, ingress, secret, cpu_only):
    endpoint = endpoint_on(
        gpu, flavour=flavour, replicas=replicas, ingress=ingress, secret=secret, cpu_only=cpu_only, team_a=team_a
    )
    rendered = m.endpoint_manifests(endpoint) + m.team_manifests(team_a, 16)
    kinds = [o["kind"] for o in rendered]
    expected = ["RayService"] if flavour == "rayservice" else ["Deployment", "Service"]
    if flavour == "deployment" and replicas[0] != replicas[1]:
        expected.append("HorizontalPodAutoscaler")
    if ingress:
        expected.append("Ingress")
    assert kinds == [*expected, "Namespace", "ResourceQuota", "LimitRange"]
    for obj in rendered:
        assert validate(obj) == [], obj["kind"]


def test_the_schemas_catch_a_misspelt_or_mistyped_field(gpu, team_a):
    endpoint = endpoint_on(
        gpu, flavour="rayservice", replicas=(1, 1), ingress="", secret="", cpu_only=False, team_a=team_a
    )
    rayservice = m.rayservice_manifest(endpoint)
    rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["maxReplica"] = 2
    rayservice["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = 0
    problems = validate(rayservice)
    assert any("maxReplica" in p and "Additional properties" in p for p in problems)
    assert any(p.startswith("spec.rayClusterConfig.headGroupSpec.rayStartParams.num-gpus") for p in problems)
    deployment = m.vllm_deployment_manifest(endpoint)
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "two"
    assert validate(deployment)


def test_the_serve_config_is_the_ray_runtimes_application_and_never_holds_the_token(gpu, team_a, monkeypatch):
    monkeypatch.setenv("PARETO_TEST_HF_TOKEN", "hf_secret_value_123")
    endpoint = endpoint_on(
        gpu, flavour="rayservice", replicas=(1, 4), ingress="", secret="hf-token", cpu_only=False, team_a=team_a
    )
    ray_app = serve_application(endpoint)
    assert ray_app["runtime_env"]["env_vars"]["HF_TOKEN"] == "hf_secret_value_123"  # what a plain Ray cluster gets
    rayservice = m.rayservice_manifest(endpoint)
    text = yaml.safe_dump(rayservice)
    assert "hf_secret_value_123" not in text
    (app,) = yaml.safe_load(rayservice["spec"]["serveConfigV2"])["applications"]
    ray_app.pop("runtime_env")
    assert app == ray_app
    for group in [
        rayservice["spec"]["rayClusterConfig"]["headGroupSpec"],
        *rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"],
    ]:
        (container,) = group["template"]["spec"]["containers"]
        assert container["env"] == [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}}
        ]


def test_the_worker_group_is_sized_from_the_endpoint(gpu, team_a):
    endpoint = endpoint_on(
        gpu, flavour="rayservice", replicas=(1, 4), ingress="", secret="", cpu_only=False, team_a=team_a
    )
    config = m.rayservice_manifest(endpoint)["spec"]["rayClusterConfig"]
    head = config["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    (group,) = config["workerGroupSpecs"]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (1, 1, 4)
    assert config["enableInTreeAutoscaling"] is True
    pod = group["template"]["spec"]
    (worker,) = pod["containers"]
    assert (
        worker["resources"]["requests"]
        == worker["resources"]["limits"]
        == {
            "cpu": "16",
            "memory": "320Gi",
            "nvidia.com/gpu": "4",
        }
    )
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert worker["image"] == head["template"]["spec"]["containers"][0]["image"] == endpoint.cluster.kube_ray_image


def test_a_cpu_only_cluster_asks_for_cpus_and_no_gpu_nodes(gpu, team_a):
    endpoint = endpoint_on(
        gpu, flavour="deployment", replicas=(1, 1), ingress="", secret="", cpu_only=True, team_a=team_a
    )
    pod = m.vllm_deployment_manifest(endpoint)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert {"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"} in container["env"]
    assert container["args"][container["args"].index("--tensor-parallel-size") + 1] == "1"


def test_engine_switches_become_vllm_flags(gpu, team_a):
    endpoint = endpoint_on(
        gpu, flavour="deployment", replicas=(1, 1), ingress="", secret="", cpu_only=False, team_a=team_a
    )
    args = m.vllm_args(endpoint)
    assert "--enable-prefix-caching" in args
    assert "--enforce-eager" not in args and "--no-enforce-eager" not in args
    assert args[args.index("--max-num-seqs") + 1] == "128"
    assert args[args.index("--dtype") + 1] == "bfloat16"
