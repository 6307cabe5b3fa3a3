from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.inventory.models import Cluster, ClusterGpuInventory
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory

pytestmark = pytest.mark.django_db

CLUSTERS = reverse("api:clusters-list")
CONNECTION_FIELDS = {"ray_dashboard_url", "kube_auth", "kubeconfig_env", "kube_context", "secret_env"}
# session, user, memberships (roles), count, page, inventory, GPU types (2 prefetches), session save (3)
LIST_QUERIES = 10


@pytest.fixture
def cluster() -> Cluster:
    ray = ClusterFactory(
        name="ray-local",
        description="The local Ray head",
        ray_dashboard_url="http://127.0.0.1:8265",
        secret_env={"hf_token": "PARETO_HF_TOKEN"},
    )
    ClusterGpuInventoryFactory(cluster=ray, gpu_type=GpuTypeFactory(sku="H100-80GB"), count=8)
    return ray


def url(cluster: Cluster) -> str:
    return reverse("api:clusters-detail", args=[cluster.pk])


def inventory_url(cluster: Cluster) -> str:
    return reverse("api:clusters-set-inventory", args=[cluster.pk])


def test_anonymous_gets_401(client_for, cluster):
    assert client_for(None).get(CLUSTERS).status_code == 401


@pytest.mark.parametrize("role", ["member_user", "lead_user", "other_lead", "finance_user"])
def test_non_admins_see_no_connection_settings(request, client_for, cluster, role):
    client = client_for(request.getfixturevalue(role))
    for body in (client.get(CLUSTERS).json()["results"][0], client.get(url(cluster)).json()):
        assert body == {
            "id": cluster.pk,
            "name": "ray-local",
            "runtime": "ray",
            "description": "The local Ray head",
            "inventory": [{"gpu_type": "H100-80GB", "count": 8}],
        }
    assert b"PARETO_HF_TOKEN" not in client.get(CLUSTERS).content


def test_admins_see_connection_settings(client_for, admin_user, cluster):
    body = client_for(admin_user).get(url(cluster)).json()
    assert set(body) >= CONNECTION_FIELDS
    assert body["secret_env"] == {"hf_token": "PARETO_HF_TOKEN"}
    assert body["ray_dashboard_url"] == "http://127.0.0.1:8265"


def test_admin_creates_a_cluster_with_an_audit_event(client_for, admin_user):
    response = client_for(admin_user).post(
        CLUSTERS,
        {"name": "aks-west", "runtime": "kubernetes", "kube_auth": "kubeconfig", "kubeconfig_env": "AKS_KUBECONFIG"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.json()
    created = Cluster.objects.get(name="aks-west")
    assert response.json()["kubeconfig_env"] == "AKS_KUBECONFIG" and response.json()["inventory"] == []
    event = AuditEvent.objects.get(action="cluster.create")
    assert event.actor == admin_user and event.target_id == str(created.pk)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "r", "runtime": "ray"}, "ray_dashboard_url"),
        ({"name": "k", "runtime": "kubernetes"}, "kube_auth"),
        ({"name": "k", "runtime": "kubernetes", "kube_auth": "kubeconfig"}, "kubeconfig_env"),
        ({"name": "r", "runtime": "slurm"}, "runtime"),
        # A secret value instead of the name of a variable that holds it.
        (
            {
                "name": "r",
                "runtime": "ray",
                "ray_dashboard_url": "http://ray.example.test:8265",
                "secret_env": {"hf": "hf_abc-123"},
            },
            "secret_env",
        ),
        ({"name": "ray-local", "runtime": "ray", "ray_dashboard_url": "http://ray.example.test:8265"}, "name"),
    ],
)
def test_bad_cluster_input_names_the_field_and_creates_nothing(client_for, admin_user, cluster, data, field):
    response = client_for(admin_user).post(CLUSTERS, data, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert list(Cluster.objects.values_list("name", flat=True)) == ["ray-local"]
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_write_clusters(request, client_for, cluster, role):
    client = client_for(request.getfixturevalue(role))
    data = {"name": "x", "runtime": "ray", "ray_dashboard_url": "http://ray.example.test:8265"}
    assert client.post(CLUSTERS, data, content_type="application/json").status_code == 403
    assert client.patch(url(cluster), {"description": "mine"}, content_type="application/json").status_code == 403
    assert client.delete(url(cluster)).status_code == 403
    assert client.post(inventory_url(cluster), {"gpu_type": "H100-80GB", "count": 0}).status_code == 403
    cluster.refresh_from_db()
    assert cluster.description == "The local Ray head"
    assert ClusterGpuInventory.objects.get().count == 8


def test_admin_updates_and_deletes_a_cluster(client_for, admin_user, cluster):
    client = client_for(admin_user)
    response = client.patch(url(cluster), {"description": "Head on the laptop"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["inventory"] == [{"gpu_type": "H100-80GB", "count": 8}]
    assert AuditEvent.objects.get(action="cluster.update").after == {"description": "Head on the laptop"}
    assert client.delete(url(cluster)).status_code == 204
    assert not Cluster.objects.exists()


def test_update_cannot_drop_the_dashboard_url_of_a_ray_cluster(client_for, admin_user, cluster):
    response = client_for(admin_user).patch(url(cluster), {"ray_dashboard_url": ""}, content_type="application/json")
    assert response.status_code == 400 and "ray_dashboard_url" in response.json()
    cluster.refresh_from_db()
    assert cluster.ray_dashboard_url == "http://127.0.0.1:8265"


def test_admin_sets_inventory(client_for, admin_user, cluster):
    GpuTypeFactory(sku="A10-24GB")
    client = client_for(admin_user)
    added = client.post(inventory_url(cluster), {"gpu_type": "A10-24GB", "count": 4}, content_type="application/json")
    assert added.status_code == 200, added.json()
    assert added.json()["inventory"] == [{"gpu_type": "A10-24GB", "count": 4}, {"gpu_type": "H100-80GB", "count": 8}]
    removed = client.post(
        inventory_url(cluster), {"gpu_type": "H100-80GB", "count": 0}, content_type="application/json"
    )
    assert removed.json()["inventory"] == [{"gpu_type": "A10-24GB", "count": 4}]
    assert [e.action for e in AuditEvent.objects.order_by("id")] == [
        "cluster_inventory.create",
        "cluster_inventory.delete",
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [({"gpu_type": "H100-80GB", "count": -2}, "count"), ({"gpu_type": "NOPE", "count": 2}, "gpu_type")],
)
def test_bad_inventory_input_changes_nothing(client_for, admin_user, cluster, data, field):
    response = client_for(admin_user).post(inventory_url(cluster), data, content_type="application/json")
    assert response.status_code == 400 and field in response.json()
    assert list(ClusterGpuInventory.objects.values_list("count", flat=True)) == [8]


@pytest.mark.parametrize("role", ["member_user", "admin_user"])
def test_cluster_list_query_count_is_constant(request, client_for, role, django_assert_max_num_queries):
    gpus = GpuTypeFactory.create_batch(3)
    for cluster in ClusterFactory.create_batch(6):
        for gpu in gpus:
            ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu)
    client = client_for(request.getfixturevalue(role))
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(CLUSTERS)
    assert response.json()["count"] == 6
    assert all(len(row["inventory"]) == 3 for row in response.json()["results"])
