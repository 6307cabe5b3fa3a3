"""GPU types, prices and clusters in the Django admin: audited, inlines too; price history read-only."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.tests.adminform import page_data, submit, superuser
from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuPriceFactory, GpuTypeFactory


def state() -> tuple:
    return (
        list(Cluster.objects.order_by("pk").values()),
        list(ClusterGpuInventory.objects.order_by("pk").values()),
        list(GpuPrice.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )


@pytest.fixture
def root(db):
    return superuser()


def test_gpu_type_change_is_audited_and_price_history_stays_read_only(client_for, root):
    gpu = GpuTypeFactory(sku="H100-80GB", memory_gib=80)
    price = GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.5000"))
    client = client_for(root)
    url = reverse("admin:inventory_gputype_change", args=[gpu.pk])
    page = client.get(url)
    html = page.content.decode()
    assert "2.5000" in html  # the history is shown
    assert 'name="prices-0-hourly_price"' not in html  # but not editable

    # Even a forged value for the inline is ignored.
    data = page_data(page) | {"memory_gib": "94", "prices-0-hourly_price": "0.0100"}
    assert client.post(url, data).status_code == 302
    gpu.refresh_from_db()
    price.refresh_from_db()
    assert gpu.memory_gib == 94
    assert price.hourly_price == Decimal("2.5000")
    event = AuditEvent.objects.get(action="gpu_type.admin_update")
    assert (event.before, event.after, event.actor_id) == ({"memory_gib": 80}, {"memory_gib": 94}, root.pk)


def test_prices_cannot_be_added_changed_or_deleted_in_the_admin(client_for, root):
    price = GpuPriceFactory(effective_from=timezone.now() + dt.timedelta(days=2))
    client = client_for(root)
    before = state()
    assert client.get(reverse("admin:inventory_gpuprice_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:inventory_gpuprice_change", args=[price.pk]), {"hourly_price": "9", "_save": "Save"}
        ).status_code
        == 403
    )
    assert client.post(reverse("admin:inventory_gpuprice_delete", args=[price.pk]), {"post": "yes"}).status_code == 403
    assert state() == before


def test_inline_inventory_changes_are_audited_one_event_per_row(client_for, root):
    cluster = ClusterFactory(name="ray-a")
    h100, l4, a10 = GpuTypeFactory(sku="H100-80GB"), GpuTypeFactory(sku="L4-24GB"), GpuTypeFactory(sku="A10-24GB")
    kept = ClusterGpuInventoryFactory(cluster=cluster, gpu_type=h100, count=8)
    dropped = ClusterGpuInventoryFactory(cluster=cluster, gpu_type=l4, count=2)
    client = client_for(root)
    url = reverse("admin:inventory_cluster_change", args=[cluster.pk])
    data = page_data(client.get(url))
    rows = {data[f"inventory-{i}-id"]: i for i in range(2)}
    data[f"inventory-{rows[str(kept.pk)]}-count"] = "16"
    data[f"inventory-{rows[str(dropped.pk)]}-DELETE"] = "on"
    data |= {
        "inventory-TOTAL_FORMS": "3",
        "inventory-2-gpu_type": str(a10.pk),
        "inventory-2-count": "4",
        "inventory-2-cluster": str(cluster.pk),
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]

    counts = dict(ClusterGpuInventory.objects.filter(cluster=cluster).values_list("gpu_type__sku", "count"))
    assert counts == {"H100-80GB": 16, "A10-24GB": 4}
    events = {e.action: e for e in AuditEvent.objects.filter(action__startswith="cluster_gpu_inventory.")}
    assert set(events) == {
        "cluster_gpu_inventory.admin_update",
        "cluster_gpu_inventory.admin_delete",
        "cluster_gpu_inventory.admin_create",
    }
    update = events["cluster_gpu_inventory.admin_update"]
    assert (update.target_id, update.before, update.after) == (str(kept.pk), {"count": 8}, {"count": 16})
    delete = events["cluster_gpu_inventory.admin_delete"]
    assert (delete.target_id, delete.before["count"]) == (str(dropped.pk), 2)
    create = events["cluster_gpu_inventory.admin_create"]
    assert create.after["gpu_type_id"] == a10.pk and create.after["count"] == 4
    assert all(e.actor_id == root.pk for e in events.values())
    # The cluster itself did not change, so it has no event of its own.
    assert not AuditEvent.objects.filter(action="cluster.admin_update").exists()


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"secret_env": '{"hf_token": "hf_AbCdEf0123456789"}'}, "secret_env", "not hold a secret value"),
        ({"ray_dashboard_url": ""}, "ray_dashboard_url", "A Ray cluster needs its dashboard URL."),
        ({"runtime": "kubernetes"}, "kube_auth", "Choose in-cluster or kubeconfig."),
    ],
)
def test_the_admin_applies_the_cluster_rules_and_changes_nothing(client_for, root, changes, field, message):
    cluster = ClusterFactory(name="ray-b", secret_env={"hf_token": "PARETO_HF_TOKEN"})
    before = state()
    response = submit(client_for(root), reverse("admin:inventory_cluster_change", args=[cluster.pk]), **changes)
    assert response.status_code == 200
    assert any(message in error for error in response.context["adminform"].form.errors[field])
    assert state() == before


def test_a_cluster_added_in_the_admin_is_audited(client_for, root):
    response = submit(
        client_for(root),
        reverse("admin:inventory_cluster_add"),
        name="aks-1",
        runtime="kubernetes",
        kube_auth="in_cluster",
        secret_env="{}",
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="cluster.admin_create")
    assert event.after["name"] == "aks-1" and event.after["kube_auth"] == "in_cluster"
