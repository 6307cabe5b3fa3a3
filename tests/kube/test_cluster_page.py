"""The cluster page of a Kubernetes cluster: the API server it reaches, whether KubeRay's CRD is there, GPUs per
type from the nodes' labels and allocatable resources, the last reconcile; and the form with the Kubernetes
settings."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.inventory.models import Cluster
from apps.inventory.tests.factories import ClusterGpuInventoryFactory, GpuTypeFactory

from .conftest import KUBECONFIG_ENV, make_cluster


@pytest.fixture
def cluster(db, apiserver):
    h100 = GpuTypeFactory(sku="H100-80GB", node_selector_label="nvidia.com/gpu.product", node_selector_value="H100")
    cluster = make_cluster(last_reconciled_at=timezone.now() - dt.timedelta(minutes=3))
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=h100, count=16)
    apiserver.add_node("gpu-1", {"nvidia.com/gpu.product": "H100"}, gpus=8)
    apiserver.add_node("gpu-2", {"nvidia.com/gpu.product": "H100"}, gpus=8)
    apiserver.add_node("gpu-3", {"nvidia.com/gpu.product": "NVIDIA-L4"}, gpus=1)
    apiserver.add_node("system-1", {"kubernetes.azure.com/mode": "system"})
    return cluster


def page(client_for, admin_user, cluster):
    response = client_for(admin_user).get(reverse("inventory:cluster_detail", args=[cluster.pk]))
    assert response.status_code == 200
    return response


def test_the_page_shows_the_api_server_kuberay_gpus_and_last_reconcile(client_for, admin_user, cluster, apiserver):
    response = page(client_for, admin_user, cluster)
    html = response.content.decode()
    assert apiserver.url in html
    assert "Kubernetes v1.31.4" in html
    assert "RayService CRD installed" in html
    rows = {row["capacity"].value: row for row in response.context["gpu_rows"]}
    assert set(rows) == {"H100", "NVIDIA-L4"}
    h100 = rows["H100"]
    assert (h100["capacity"].gpu_type.sku, h100["capacity"].nodes, h100["capacity"].allocatable) == ("H100-80GB", 2, 16)
    assert h100["recorded"] == 16
    assert rows["NVIDIA-L4"]["capacity"].gpu_type is None
    assert "no GPU type has this label" in html
    assert "3\xa0minutes ago" in html
    assert "rayproject/ray-llm" in html


def test_without_kuberay_the_page_says_so(client_for, admin_user, cluster, apiserver):
    apiserver.objects.pop(("CustomResourceDefinition", "", "rayservices.ray.io"))
    html = page(client_for, admin_user, cluster).content.decode()
    assert "RayService CRD not installed" in html
    assert "endpoints cannot start until KubeRay is installed" in html


def test_an_unreachable_api_server_is_reported_on_the_page(client_for, admin_user, cluster, apiserver):
    apiserver.fail("GET", "/version", status=503, message="apiserver is shutting down")
    html = page(client_for, admin_user, cluster).content.decode()
    assert "Could not ask the API server" in html
    assert "apiserver is shutting down" in html


def test_a_missing_kubeconfig_is_reported_on_the_page(client_for, admin_user, cluster, monkeypatch):
    monkeypatch.delenv(KUBECONFIG_ENV)
    html = page(client_for, admin_user, cluster).content.decode()
    assert f"The environment variable {KUBECONFIG_ENV}" in html


def test_a_missing_image_is_warned_about(client_for, admin_user, cluster):
    Cluster.objects.filter(pk=cluster.pk).update(kube_ray_image="")
    html = page(client_for, admin_user, cluster).content.decode()
    assert "has no Ray image set" in html


def test_a_ray_cluster_page_asks_no_kubernetes_api(client_for, admin_user, apiserver, db):
    ray = Cluster.objects.create(name="laptop", runtime=Cluster.Runtime.RAY, ray_dashboard_url="http://127.0.0.1:8265")
    response = page(client_for, admin_user, ray)
    assert "facts" not in response.context
    assert not apiserver.requests


def kube_form(**overrides):
    data = {
        "name": "aks-west",
        "runtime": "kubernetes",
        "description": "",
        "ray_dashboard_url": "",
        "kube_auth": "kubeconfig",
        "kubeconfig_env": "PARETO_AKS_KUBECONFIG",
        "kube_context": "",
        "kube_flavour": "deployment",
        "kube_ray_image": "",
        "kube_vllm_image": "vllm/vllm-openai:v0.11.0",
        "kube_ingress_host": "llm.example.com",
        "kube_hf_token_secret": "hf-token",
        "secret_env": "{}",
    }
    data.update(overrides)
    return data


def test_the_form_shows_and_saves_the_kubernetes_settings(client_for, admin_user, db):
    client = client_for(admin_user)
    html = client.get(reverse("inventory:cluster_create")).content.decode()
    for name in ("kube_flavour", "kube_ray_image", "kube_vllm_image", "kube_ingress_host", "kube_hf_token_secret"):
        assert f'name="{name}"' in html
    response = client.post(reverse("inventory:cluster_create"), kube_form())
    assert response.status_code == 302
    cluster = Cluster.objects.get(name="aks-west")
    assert (cluster.kube_flavour, cluster.kube_vllm_image, cluster.kube_ingress_host, cluster.kube_hf_token_secret) == (
        "deployment",
        "vllm/vllm-openai:v0.11.0",
        "llm.example.com",
        "hf-token",
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"kube_ingress_host": "https://llm.example.com/"}, "kube_ingress_host", "no https://"),
        ({"kube_hf_token_secret": "hf_AbCdEf0123456789"}, "kube_hf_token_secret", "not the token itself"),
        ({"kube_vllm_image": "vllm/vllm-openai v0.11"}, "kube_vllm_image", "has no spaces"),
        ({"kube_flavour": "helm"}, "kube_flavour", "Select a valid choice"),
    ],
)
def test_bad_kubernetes_settings_are_shown_next_to_the_field_and_save_nothing(
    client_for, admin_user, db, overrides, field, message
):
    response = client_for(admin_user).post(reverse("inventory:cluster_create"), kube_form(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors[field]
    assert any(message in e for e in errors), errors
    assert "hf_AbCdEf0123456789" not in response.content.decode()  # a token pasted by mistake is not echoed
    assert not Cluster.objects.filter(name="aks-west").exists()
