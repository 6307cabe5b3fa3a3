"""Fixtures for the Kubernetes runtime: a fake API server reached through a real kubeconfig, the simulated
operator, and a Kubernetes cluster row with a team, quota and model ready to request endpoints on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.core.health import redis_client
from apps.endpoints import lifecycle, services
from apps.endpoints.models import Endpoint
from apps.endpoints.tests.fakes import clear_queue
from apps.inventory.models import Cluster, GpuType
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.models import Team
from apps.teams.tests.factories import GpuQuotaFactory

from .apiserver import FakeApiServer
from .operator import SimulatedOperator

KUBECONFIG_ENV = "PARETO_TEST_KUBECONFIG"
RAY_IMAGE = "rayproject/ray-llm:2.60.0-py311-cu128"
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"


def _clear_kube_keys() -> None:
    redis = redis_client()
    keys = list(redis.scan_iter("pareto:kube:*")) + list(redis.scan_iter("pareto:poll:*"))
    if keys:
        redis.delete(*keys)


@pytest.fixture(autouse=True)
def _kube_settings(settings) -> None:
    settings.PARETO_KUBE_RETRY_BACKOFF_SECONDS = 0.01
    settings.PARETO_KUBE_HTTP_TIMEOUT = 2.0
    settings.PARETO_KUBE_RETRIES = 3
    settings.PARETO_DEPLOY_DEADLINE_SECONDS = 600
    settings.PARETO_KUBE_NAMESPACE_PREFIX = "pareto-"
    settings.PARETO_KUBE_MAX_GPUS_PER_POD = 8


@pytest.fixture(autouse=True)
def _clean_redis() -> Iterator[None]:
    _clear_kube_keys()
    clear_queue()
    yield
    _clear_kube_keys()
    clear_queue()


@pytest.fixture
def apiserver(tmp_path, monkeypatch) -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    monkeypatch.setenv(KUBECONFIG_ENV, str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def operator(apiserver) -> SimulatedOperator:
    return SimulatedOperator(apiserver)


@dataclass
class World:
    team: Team
    cluster: Cluster
    gpu: GpuType
    model: CatalogModel
    lead: Actor
    admin: Actor

    def request(self, name: str = "chat", **kw: Any) -> Endpoint:
        kw.setdefault("gpus_per_replica", 2)
        return services.endpoint_request(
            actor=self.lead, team=self.team, name=name, model=self.model, cluster=self.cluster, **kw
        )

    def apply(self) -> None:
        lifecycle.cluster_apply(cluster_id=self.cluster.pk)

    def observe(self) -> lifecycle.ObserveResult:
        return lifecycle.cluster_observe(cluster_id=self.cluster.pk)

    def refresh(self) -> None:
        self.cluster.refresh_from_db()


def make_cluster(**kw: Any) -> Cluster:
    fields = {
        "name": "aks-east",
        "runtime": Cluster.Runtime.KUBERNETES,
        "ray_dashboard_url": "",
        "kube_auth": Cluster.KubeAuth.KUBECONFIG,
        "kubeconfig_env": KUBECONFIG_ENV,
        "kube_flavour": Cluster.KubeFlavour.RAYSERVICE,
        "kube_ray_image": RAY_IMAGE,
        "kube_vllm_image": VLLM_IMAGE,
        **kw,
    }
    return ClusterFactory(**fields)


@pytest.fixture
def world(team_a, lead_user, admin_user, apiserver) -> World:
    gpu = GpuTypeFactory(
        sku="H100-80GB",
        memory_gib=80,
        node_selector_label="nvidia.com/gpu.product",
        node_selector_value="NVIDIA-H100-80GB-HBM3",
        ray_accelerator_type="H100",
    )
    cluster = make_cluster()
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=32)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", source="meta-llama/Llama-3.1-8B-Instruct", recommended_gpu_type=gpu)
    return World(
        team=team_a,
        cluster=cluster,
        gpu=gpu,
        model=model,
        lead=Actor(user=lead_user),
        admin=Actor(user=admin_user),
    )


def fresh(endpoint: Endpoint) -> Endpoint:
    return Endpoint.objects.select_related("team", "cluster", "gpu_type", "model").get(pk=endpoint.pk)
