"""Cluster pages: platform admins only; secrets only as environment variable names; inventory per GPU type."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.inventory.models import Cluster, ClusterGpuInventory
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory

NON_ADMINS = ("member_user", "lead_user", "other_lead", "finance_user")


def state() -> tuple:
    return (
        list(Cluster.objects.order_by("pk").values()),
        list(ClusterGpuInventory.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )


def field_errors(response, field: str, form_key: str = "form") -> list[str]:
    """Errors shown next to `field`: in the form, and rendered in the page close after that field's input."""
    errors = response.context[form_key].errors.get(field, [])
    html = response.content.decode()
    for message in errors:
        escaped = message.replace("'", "&#x27;").replace('"', "&quot;").replace(">", "&gt;")
        field_at = html.index(f'name="{field}"')
        assert escaped in html[field_at : field_at + 2500], f"{message!r} is not shown next to {field}"
    return errors


def last_event() -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    return event


def ray_post(**overrides) -> dict:
    data = {
        "name": "ray-local",
        "runtime": "ray",
        "description": "The Ray head on this machine",
        "ray_dashboard_url": "http://127.0.0.1:8265",
        "kube_auth": "",
        "kubeconfig_env": "",
        "kube_context": "",
        "secret_env": '{"hf_token": "PARETO_HF_TOKEN"}',
    }
    data.update(overrides)
    return data


def kube_post(**overrides) -> dict:
    defaults = {
        "name": "aks-westeurope",
        "runtime": "kubernetes",
        "ray_dashboard_url": "",
        "kube_auth": "kubeconfig",
        "kubeconfig_env": "PARETO_AKS_KUBECONFIG",
        "kube_context": "aks-prod",
    }
    return ray_post(**{**defaults, **overrides})


@pytest.fixture
def cluster(db) -> Cluster:
    return ClusterFactory(name="ray-main")


def pages(cluster: Cluster) -> list[str]:
    return [
        reverse("inventory:clusters"),
        reverse("inventory:cluster_create"),
        reverse("inventory:cluster_detail", args=[cluster.pk]),
        reverse("inventory:cluster_edit", args=[cluster.pk]),
        reverse("inventory:cluster_delete", args=[cluster.pk]),
    ]


# --- who may open what --------------------------------------------------------------------------
def test_admin_opens_every_cluster_page(client_for, admin_user, cluster):
    client = client_for(admin_user)
    for url in pages(cluster):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("role", NON_ADMINS)
def test_everyone_else_is_refused(request, client_for, cluster, role):
    client = client_for(request.getfixturevalue(role))
    for url in pages(cluster):
        assert client.get(url).status_code == 403, url


def test_anonymous_is_sent_to_sign_in(client_for, cluster):
    for url in pages(cluster):
        response = client_for(None).get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admin_posts_change_nothing(request, client_for, cluster, role):
    gpu = GpuTypeFactory()
    client = client_for(request.getfixturevalue(role))
    before = state()
    for url, data in (
        (reverse("inventory:cluster_create"), ray_post(name="sneaky")),
        (reverse("inventory:cluster_edit", args=[cluster.pk]), ray_post(name="renamed")),
        (reverse("inventory:cluster_delete", args=[cluster.pk]), {}),
        (reverse("inventory:cluster_inventory_set", args=[cluster.pk]), {"gpu_type": gpu.pk, "count": "8"}),
    ):
        assert client.post(url, data).status_code == 403, url
    assert state() == before


def test_clusters_are_not_in_the_navigation_of_non_admins(client_for, member_user, admin_user, db):
    assert reverse("inventory:clusters") not in client_for(member_user).get("/").content.decode()
    assert reverse("inventory:clusters") in client_for(admin_user).get("/").content.decode()


# --- list and detail ----------------------------------------------------------------------------
def test_list_shows_runtime_connection_and_inventory_per_type(client_for, admin_user):
    ray = ClusterFactory(name="ray-a", ray_dashboard_url="http://10.0.0.5:8265")
    kube = ClusterFactory(
        name="aks-b", runtime="kubernetes", ray_dashboard_url="", kube_auth="in_cluster", kube_context="prod"
    )
    h100, l4 = GpuTypeFactory(sku="H100-80GB"), GpuTypeFactory(sku="L4-24GB")
    ClusterGpuInventoryFactory(cluster=ray, gpu_type=h100, count=16)
    ClusterGpuInventoryFactory(cluster=ray, gpu_type=l4, count=4)
    html = client_for(admin_user).get(reverse("inventory:clusters")).content.decode()
    ray_row = html[html.index("ray-a") :]
    kube_row = html[html.index("aks-b") : html.index("ray-a")]
    assert "16 \N{MULTIPLICATION SIGN} H100-80GB" in ray_row
    assert "4 \N{MULTIPLICATION SIGN} L4-24GB" in ray_row
    assert "http://10.0.0.5:8265" in ray_row
    assert "Kubernetes" in kube_row and "In-cluster service account" in kube_row and "No GPUs recorded" in kube_row
    assert kube.pk != ray.pk


def test_list_empty_state(client_for, admin_user, db):
    assert "No clusters yet." in client_for(admin_user).get(reverse("inventory:clusters")).content.decode()


def test_clusters_query_count_does_not_grow(client_for, admin_user, django_assert_max_num_queries, db):
    client = client_for(admin_user)
    url = reverse("inventory:clusters")
    gpus = [GpuTypeFactory(), GpuTypeFactory()]

    def add(n: int) -> None:
        for _ in range(n):
            cluster = ClusterFactory()
            for gpu in gpus:
                ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=8)

    def count() -> int:
        # 10: the page itself plus the admin navigation's pending-approvals count.
        with CaptureQueriesContext(connection) as ctx, django_assert_max_num_queries(10):
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    add(3)
    with_three = count()
    add(7)
    assert count() == with_three


def test_detail_shows_secret_names_never_values_and_the_inventory(client_for, admin_user):
    cluster = ClusterFactory(name="ray-x", secret_env={"hf_token": "PARETO_HF_TOKEN"})
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=GpuTypeFactory(sku="A10-24GB"), count=2)
    html = client_for(admin_user).get(reverse("inventory:cluster_detail", args=[cluster.pk])).content.decode()
    assert "PARETO_HF_TOKEN" in html and "hf_token" in html
    assert "A10-24GB" in html
    assert 'name="count"' in html and 'name="gpu_type"' in html


# --- create, edit, delete -----------------------------------------------------------------------
def test_admin_adds_a_ray_cluster_and_the_change_is_audited(client_for, admin_user, db):
    response = client_for(admin_user).post(reverse("inventory:cluster_create"), ray_post())
    cluster = Cluster.objects.get(name="ray-local")
    assert response["Location"] == reverse("inventory:cluster_detail", args=[cluster.pk])
    assert cluster.secret_env == {"hf_token": "PARETO_HF_TOKEN"}
    event = last_event()
    assert (event.action, event.actor_id, event.after["runtime"]) == ("cluster.create", admin_user.pk, "ray")


def test_admin_adds_a_kubernetes_cluster(client_for, admin_user, db):
    response = client_for(admin_user).post(reverse("inventory:cluster_create"), kube_post(secret_env=""))
    assert response.status_code == 302
    cluster = Cluster.objects.get(name="aks-westeurope")
    assert (cluster.kube_auth, cluster.kubeconfig_env, cluster.secret_env) == (
        "kubeconfig",
        "PARETO_AKS_KUBECONFIG",
        {},
    )


def test_the_form_says_secrets_are_variable_names(client_for, admin_user, db):
    html = client_for(admin_user).get(reverse("inventory:cluster_create")).content.decode()
    assert "Never paste a secret here" in html
    assert "NAME of the environment variable" in html


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (ray_post(secret_env='{"hf_token": "hf_AbCdEf0123456789xyz"}'), "secret_env", "not hold a secret value"),
        (ray_post(secret_env='{"api_key": "sk-live-4f9a8b7c6d5e"}'), "secret_env", "not hold a secret value"),
        (ray_post(secret_env='["PARETO_HF_TOKEN"]'), "secret_env", "Give an object"),
        (ray_post(secret_env='{"hf_token": '), "secret_env", "Enter a valid JSON."),
        (ray_post(ray_dashboard_url=""), "ray_dashboard_url", "A Ray cluster needs its dashboard URL."),
        (ray_post(ray_dashboard_url="not a url"), "ray_dashboard_url", "Enter a valid URL."),
        (kube_post(kube_auth=""), "kube_auth", "Choose in-cluster or kubeconfig."),
        (kube_post(kubeconfig_env=""), "kubeconfig_env", "Name the environment variable"),
        (kube_post(kubeconfig_env="/home/me/.kube/config"), "kubeconfig_env", "Give the name of an environment"),
        (ray_post(runtime="slurm"), "runtime", "Select a valid choice."),
        (ray_post(name=""), "name", "This field is required."),
    ],
)
def test_bad_cluster_is_shown_next_to_the_field_and_adds_nothing(client_for, admin_user, db, data, field, message):
    before = state()
    response = client_for(admin_user).post(reverse("inventory:cluster_create"), data)
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert state() == before


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (
            '{"hf_token": "hf_abc123XYZsecret", "db": "PARETO_DB_PASSWORD"}',
            {"hf_token": "", "db": "PARETO_DB_PASSWORD"},
        ),
        ('{"hf_token": "hf_abc123XYZsecret"', {}),  # not even JSON: nothing of it comes back
    ],
)
def test_a_rejected_secret_value_is_not_sent_back_in_the_page(client_for, admin_user, cluster, given, shown):
    before = state()
    response = client_for(admin_user).post(
        reverse("inventory:cluster_edit", args=[cluster.pk]), ray_post(name=cluster.name, secret_env=given)
    )
    assert field_errors(response, "secret_env")
    assert "hf_abc123XYZsecret" not in response.content.decode()
    assert json.loads(response.context["form"]["secret_env"].value()) == shown
    assert state() == before


def test_admin_edits_a_cluster_and_only_the_change_is_audited(client_for, admin_user, cluster):
    data = ray_post(name=cluster.name, ray_dashboard_url=cluster.ray_dashboard_url, description="GPU pool B")
    response = client_for(admin_user).post(reverse("inventory:cluster_edit", args=[cluster.pk]), data)
    assert response.status_code == 302
    cluster.refresh_from_db()
    assert cluster.description == "GPU pool B"
    event = last_event()
    assert event.action == "cluster.update"
    assert set(event.after) == {"description", "secret_env"}
    assert event.before["description"] == ""


def test_switching_runtime_asks_for_the_new_runtimes_fields(client_for, admin_user, cluster):
    before = state()
    response = client_for(admin_user).post(
        reverse("inventory:cluster_edit", args=[cluster.pk]), ray_post(name=cluster.name, runtime="kubernetes")
    )
    assert field_errors(response, "kube_auth") == ["Choose in-cluster or kubeconfig."]
    assert state() == before


def test_delete_asks_first_then_deletes_on_post(client_for, admin_user, cluster):
    ClusterGpuInventoryFactory(cluster=cluster, count=4)
    client = client_for(admin_user)
    confirm = client.get(reverse("inventory:cluster_delete", args=[cluster.pk]))
    assert confirm.status_code == 200 and f"Delete {cluster.name}" in confirm.content.decode()
    assert Cluster.objects.filter(pk=cluster.pk).exists()
    response = client.post(reverse("inventory:cluster_delete", args=[cluster.pk]))
    assert response["Location"] == reverse("inventory:clusters")
    assert not Cluster.objects.filter(pk=cluster.pk).exists()
    assert not ClusterGpuInventory.objects.exists()
    event = last_event()
    assert (event.action, event.target_id) == ("cluster.delete", str(cluster.pk))


# --- inventory ----------------------------------------------------------------------------------
def test_admin_sets_changes_and_removes_the_gpus_of_a_type(client_for, admin_user, cluster):
    gpu = GpuTypeFactory(sku="H200-141GB")
    client = client_for(admin_user)
    url = reverse("inventory:cluster_inventory_set", args=[cluster.pk])

    assert client.post(url, {"gpu_type": gpu.pk, "count": "8"}).status_code == 302
    assert ClusterGpuInventory.objects.get(cluster=cluster, gpu_type=gpu).count == 8
    assert last_event().action == "cluster_inventory.create"

    client.post(url, {"gpu_type": gpu.pk, "count": "24"})
    assert ClusterGpuInventory.objects.get(cluster=cluster, gpu_type=gpu).count == 24
    event = last_event()
    assert (event.action, event.before, event.after) == ("cluster_inventory.update", {"count": 8}, {"count": 24})

    client.post(url, {"gpu_type": gpu.pk, "count": "0"})
    assert not ClusterGpuInventory.objects.filter(cluster=cluster).exists()
    assert last_event().action == "cluster_inventory.delete"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"gpu_type": "999999", "count": "8"}, "gpu_type", "Choose one of the GPU types in the list."),
        ({"gpu_type": "", "count": "8"}, "gpu_type", "This field is required."),
        ({"count": "-2"}, "count", "The GPU count must be zero or more."),
        ({"count": "1.5"}, "count", "Enter a whole number."),
    ],
)
def test_bad_inventory_is_shown_next_to_the_field_and_changes_nothing(
    client_for, admin_user, cluster, data, field, message
):
    gpu = GpuTypeFactory()
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=4)
    before = state()
    response = client_for(admin_user).post(
        reverse("inventory:cluster_inventory_set", args=[cluster.pk]), {"gpu_type": gpu.pk, **data}
    )
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field, form_key="inventory_form"))
    assert state() == before


def test_inventory_set_is_post_only(client_for, admin_user, cluster):
    assert client_for(admin_user).get(reverse("inventory:cluster_inventory_set", args=[cluster.pk])).status_code == 405


def test_a_new_cluster_form_starts_with_an_empty_secret_object(client_for, admin_user, db):
    response = client_for(admin_user).get(reverse("inventory:cluster_create"))
    assert json.loads(response.context["form"]["secret_env"].value()) == {}
