"""GPU type, price and cluster services: every change is audited, bad input changes nothing."""

from __future__ import annotations

import datetime as dt
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.audit.tests import checks
from apps.audit.tests.checks import no_event
from apps.catalog.tests.factories import CatalogModelFactory
from apps.inventory import services
from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice, GpuType
from apps.inventory.tests.factories import (
    ClusterFactory,
    ClusterGpuInventoryFactory,
    GpuPriceFactory,
    GpuTypeFactory,
)
from apps.teams.tests.factories import GpuQuotaFactory

IP = "198.51.100.23"
UTC = dt.UTC
INVENTORY_ROWS = (GpuType, GpuPrice, Cluster, ClusterGpuInventory)


@pytest.fixture
def actor(admin_user) -> Actor:
    return Actor(user=admin_user, source_ip=IP)


def assert_audited(
    action: str,
    actor: Actor,
    *,
    target: models.Model,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """The newest event is `action` by `actor`, platform-wide (no team), with the given before/after items."""
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert event.action == action
    assert (event.actor_id, event.actor_label, event.source_ip) == (actor.user.pk, actor.label, actor.source_ip)
    assert event.team_id is None
    assert (event.target_type, event.target_id) == (target._meta.label_lower, str(target.pk))
    if before is not None:
        assert event.before is not None and before.items() <= event.before.items(), event.before
    if after is not None:
        assert event.after is not None and after.items() <= event.after.items(), event.after
    return event


def refused(field: str, *models_: type[models.Model]) -> AbstractContextManager[pytest.ExceptionInfo[ValidationError]]:
    return checks.refused(field, *(models_ or INVENTORY_ROWS))


# --- GPU types -----------------------------------------------------------------------------------
def test_gpu_type_create_audits_the_new_type(actor):
    gpu = services.gpu_type_create(actor=actor, sku="H100-80GB", memory_gib=80, ray_accelerator_type="H100")

    assert GpuType.objects.get(sku="H100-80GB").memory_gib == 80
    assert_audited("gpu_type.create", actor, target=gpu, after={"id": gpu.pk, "sku": "H100-80GB", "memory_gib": 80})


def test_gpu_type_create_refuses_a_duplicate_sku(actor):
    GpuTypeFactory(sku="A100-80GB")
    with refused("sku"):
        services.gpu_type_create(actor=actor, sku="A100-80GB", memory_gib=80)


@pytest.mark.parametrize("memory", [0, -80, "lots"])
def test_gpu_type_create_refuses_bad_memory(actor, memory):
    with refused("memory_gib"):
        services.gpu_type_create(actor=actor, sku="X-1", memory_gib=memory)


def test_gpu_type_create_refuses_an_unknown_field(actor):
    with refused("price"):
        services.gpu_type_create(actor=actor, sku="X-1", memory_gib=8, price=3)


def test_gpu_type_update_audits_the_change(actor):
    gpu = GpuTypeFactory(sku="L4-24GB", memory_gib=24)
    services.gpu_type_update(actor=actor, gpu_type=gpu, memory_gib=22)

    assert GpuType.objects.get(pk=gpu.pk).memory_gib == 22
    assert_audited("gpu_type.update", actor, target=gpu, before={"memory_gib": 24}, after={"memory_gib": 22})


@pytest.mark.parametrize("same", [24, "24"])
def test_gpu_type_update_to_the_same_values_writes_no_event(actor, same):
    gpu = GpuTypeFactory(sku="L4-24GB", memory_gib=24)
    with no_event():
        services.gpu_type_update(actor=actor, gpu_type=gpu, memory_gib=same, sku="L4-24GB")


def test_gpu_type_update_refuses_bad_memory_and_keeps_the_type(actor):
    gpu = GpuTypeFactory(sku="L4-24GB", memory_gib=24)
    with refused("memory_gib"):
        services.gpu_type_update(actor=actor, gpu_type=gpu, memory_gib=0)
    assert GpuType.objects.get(pk=gpu.pk).memory_gib == 24


def test_gpu_type_delete_audits_the_type(actor):
    gpu = GpuTypeFactory(sku="T4-16GB")
    pk = gpu.pk
    services.gpu_type_delete(actor=actor, gpu_type=gpu)

    assert not GpuType.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == ("gpu_type.delete", "admin", IP, None)
    assert (event.target_id, event.before["sku"], event.after) == (str(pk), "T4-16GB", None)


@pytest.mark.parametrize(
    ("make_user", "used_by"),
    [
        (lambda gpu: GpuQuotaFactory(gpu_type=gpu), "gpu quotas"),
        (lambda gpu: ClusterGpuInventoryFactory(gpu_type=gpu), "cluster GPU inventory"),  # Django's plural
        (lambda gpu: CatalogModelFactory(recommended_gpu_type=gpu), "catalog models"),
    ],
    ids=["quota", "inventory", "catalog"],
)
def test_gpu_type_delete_refuses_a_type_still_in_use(actor, make_user, used_by):
    gpu = GpuTypeFactory(sku="H100-80GB")
    make_user(gpu)
    counts = {m: m.objects.count() for m in (*INVENTORY_ROWS, AuditEvent)}

    with pytest.raises(ValidationError) as info:
        services.gpu_type_delete(actor=actor, gpu_type=gpu)

    assert "H100-80GB" in str(info.value) and used_by in str(info.value)
    assert {m: m.objects.count() for m in counts} == counts


# --- prices --------------------------------------------------------------------------------------
def test_gpu_price_add_audits_the_price(actor):
    gpu = GpuTypeFactory()
    start = dt.datetime(2030, 1, 1, 12, tzinfo=UTC)
    price = services.gpu_price_add(
        actor=actor, gpu_type=gpu, hourly_price="3.5", currency="EUR", effective_from=start, note="list price"
    )

    assert GpuPrice.objects.get(pk=price.pk).hourly_price == Decimal("3.5000")
    assert_audited(
        "gpu_price.add",
        actor,
        target=price,
        after={
            "gpu_type_id": gpu.pk,
            "hourly_price": "3.5000",
            "currency": "EUR",
            "effective_from": "2030-01-01T12:00:00+00:00",
            "is_example": False,
            "note": "list price",
        },
    )


def test_gpu_price_add_after_the_latest_price_starts_a_new_period(actor):
    gpu = GpuTypeFactory()
    first = GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=1))
    services.gpu_price_add(
        actor=actor,
        gpu_type=gpu,
        hourly_price=Decimal("2"),
        effective_from=first.effective_from + dt.timedelta(seconds=1),
    )
    assert GpuPrice.objects.filter(gpu_type=gpu).count() == 2


def test_gpu_price_add_may_open_the_history_in_the_past(actor):
    gpu = GpuTypeFactory()
    services.gpu_price_add(
        actor=actor, gpu_type=gpu, hourly_price="1", effective_from=dt.datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert GpuPrice.objects.filter(gpu_type=gpu).count() == 1


def test_gpu_price_change_cannot_start_in_the_past(actor):
    """A later price that starts in the past would re-price hours already costed with the earlier one."""
    gpu = GpuTypeFactory()
    GpuPriceFactory(gpu_type=gpu, effective_from=dt.datetime(2025, 1, 1, tzinfo=UTC))
    with refused("effective_from") as info:
        services.gpu_price_add(
            actor=actor, gpu_type=gpu, hourly_price="2", effective_from=timezone.now() - dt.timedelta(hours=1)
        )
    assert "cannot start in the past" in str(info.value.message_dict["effective_from"])
    assert GpuPrice.objects.filter(gpu_type=gpu).count() == 1
    services.gpu_price_add(actor=actor, gpu_type=gpu, hourly_price="2", effective_from=timezone.now())
    assert GpuPrice.objects.filter(gpu_type=gpu).count() == 2


def test_gpu_price_add_reads_a_naive_moment_in_the_current_time_zone(actor, settings):
    settings.TIME_ZONE = "UTC"
    gpu = GpuTypeFactory()
    price = services.gpu_price_add(
        actor=actor, gpu_type=gpu, hourly_price="1", effective_from=dt.datetime(2031, 6, 1, 8, 30)
    )
    assert GpuPrice.objects.get(pk=price.pk).effective_from == dt.datetime(2031, 6, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hourly_price", "why"),
    [
        (Decimal("-0.0001"), "negative"),
        ("-1", "negative"),
        ("abc", "Enter a number"),
        ("", "Enter a number"),
        (None, "Enter a number"),
        ("NaN", "Enter a number"),
        ("Infinity", "Enter a number"),
        ("1.23456", "decimal places"),
        ("123456789", "digits"),
    ],
)
def test_gpu_price_add_refuses_a_bad_price(actor, hourly_price, why):
    gpu = GpuTypeFactory()
    with refused("hourly_price") as info:
        services.gpu_price_add(
            actor=actor, gpu_type=gpu, hourly_price=hourly_price, effective_from=dt.datetime(2030, 1, 1, tzinfo=UTC)
        )
    assert why in str(info.value.message_dict["hourly_price"])


@pytest.mark.parametrize("currency", ["usd", "DOLLAR", ""])
def test_gpu_price_add_refuses_a_bad_currency(actor, currency):
    gpu = GpuTypeFactory()
    with refused("currency"):
        services.gpu_price_add(
            actor=actor,
            gpu_type=gpu,
            hourly_price="1",
            currency=currency,
            effective_from=dt.datetime(2030, 1, 1, tzinfo=UTC),
        )


@pytest.mark.parametrize(
    "offset",
    [dt.timedelta(0), -dt.timedelta(seconds=1), -dt.timedelta(days=400)],
    ids=["same-start", "one-second-earlier", "a-year-earlier"],
)
def test_gpu_price_add_refuses_a_period_that_overlaps_the_latest(actor, offset):
    gpu = GpuTypeFactory()
    latest = GpuPriceFactory(
        gpu_type=gpu, hourly_price=Decimal("2.5"), effective_from=dt.datetime(2025, 3, 1, tzinfo=UTC)
    )
    with refused("effective_from") as info:
        services.gpu_price_add(
            actor=actor, gpu_type=gpu, hourly_price="9", effective_from=latest.effective_from + offset
        )
    assert "Overlaps" in str(info.value.message_dict["effective_from"])


def test_gpu_price_add_judges_overlap_by_instant_not_by_time_zone(actor):
    gpu = GpuTypeFactory()
    GpuPriceFactory(gpu_type=gpu, effective_from=dt.datetime(2025, 3, 1, 12, tzinfo=UTC))
    same_instant_in_new_york = dt.datetime(2025, 3, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    with refused("effective_from"):
        services.gpu_price_add(actor=actor, gpu_type=gpu, hourly_price="9", effective_from=same_instant_in_new_york)


def test_gpu_price_add_ignores_other_types_prices(actor):
    GpuPriceFactory(effective_from=dt.datetime(2030, 1, 1, tzinfo=UTC))
    gpu = GpuTypeFactory()
    services.gpu_price_add(
        actor=actor, gpu_type=gpu, hourly_price="1", effective_from=dt.datetime(2029, 1, 1, tzinfo=UTC)
    )
    assert gpu.prices.count() == 1


@pytest.mark.parametrize("effective_from", [None, "2030-01-01", dt.date(2030, 1, 1)])
def test_gpu_price_add_refuses_a_missing_or_non_datetime_start(actor, effective_from):
    gpu = GpuTypeFactory()
    with refused("effective_from"):
        services.gpu_price_add(actor=actor, gpu_type=gpu, hourly_price="1", effective_from=effective_from)


def test_gpu_price_add_refuses_a_gpu_type_deleted_meanwhile(actor):
    gpu = GpuTypeFactory()
    GpuType.objects.filter(pk=gpu.pk).delete()
    with refused("gpu_type"):
        services.gpu_price_add(
            actor=actor, gpu_type=gpu, hourly_price="1", effective_from=dt.datetime(2030, 1, 1, tzinfo=UTC)
        )


def test_gpu_price_delete_withdraws_a_scheduled_price_and_audits_it(actor):
    price = GpuPriceFactory(effective_from=timezone.now() + dt.timedelta(days=3), hourly_price=Decimal("4"))
    pk = price.pk
    services.gpu_price_delete(actor=actor, price=price)

    assert not GpuPrice.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == ("gpu_price.delete", "admin", IP, None)
    assert event.target_id == str(pk)
    assert (event.before["hourly_price"], event.before["gpu_type_id"]) == ("4.0000", price.gpu_type_id)


def test_gpu_price_delete_refuses_a_price_in_force(actor):
    price = GpuPriceFactory(effective_from=timezone.now() - dt.timedelta(days=1))
    counts = {m: m.objects.count() for m in (GpuPrice, AuditEvent)}
    with pytest.raises(ValidationError) as info:
        services.gpu_price_delete(actor=actor, price=price)
    assert "already in force" in str(info.value)
    assert {m: m.objects.count() for m in counts} == counts


# --- clusters ------------------------------------------------------------------------------------
RAY = {"name": "local-ray", "runtime": "ray", "ray_dashboard_url": "http://127.0.0.1:8265"}


def test_cluster_create_audits_the_cluster(actor):
    cluster = services.cluster_create(actor=actor, **RAY, secret_env={"hf_token": "PARETO_HF_TOKEN"})

    assert Cluster.objects.get(name="local-ray").secret_env == {"hf_token": "PARETO_HF_TOKEN"}
    assert_audited(
        "cluster.create",
        actor,
        target=cluster,
        after={
            "name": "local-ray",
            "runtime": "ray",
            "ray_dashboard_url": "http://127.0.0.1:8265",
            "secret_env": {"hf_token": "PARETO_HF_TOKEN"},
        },
    )


def test_cluster_create_kubernetes_with_a_kubeconfig_variable(actor):
    cluster = services.cluster_create(
        actor=actor, name="aks", runtime="kubernetes", kube_auth="kubeconfig", kubeconfig_env="PARETO_KUBECONFIG"
    )
    assert cluster.kubeconfig_env == "PARETO_KUBECONFIG"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "r", "runtime": "ray"}, "ray_dashboard_url"),
        ({"name": "r", "runtime": "ray", "ray_dashboard_url": ""}, "ray_dashboard_url"),
        ({"name": "r", "runtime": "ray", "ray_dashboard_url": "not a url"}, "ray_dashboard_url"),
        ({"name": "k", "runtime": "kubernetes"}, "kube_auth"),
        ({"name": "k", "runtime": "kubernetes", "kube_auth": "kubeconfig"}, "kubeconfig_env"),
        (
            {"name": "k", "runtime": "kubernetes", "kube_auth": "kubeconfig", "kubeconfig_env": "/home/me/.kube"},
            "kubeconfig_env",
        ),
        ({"name": "d", "runtime": "docker"}, "runtime"),
        ({"name": "", **{k: v for k, v in RAY.items() if k != "name"}}, "name"),
        ({**RAY, "password": "x"}, "password"),
    ],
    ids=[
        "ray-no-url",
        "ray-blank-url",
        "ray-bad-url",
        "kube-no-auth",
        "kubeconfig-no-variable",
        "kubeconfig-path-not-variable",
        "unknown-runtime",
        "blank-name",
        "unknown-field",
    ],
)
def test_cluster_create_refuses_incomplete_connection_settings(actor, fields, field):
    with refused(field):
        services.cluster_create(actor=actor, **fields)


@pytest.mark.parametrize(
    "secret_env",
    [
        {"hf_token": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345"},
        {"openai": "sk-proj-abc123"},
        {"hf_token": "ghp_16C7e42F292c6912E7710c838347Ae178B4a"},
        {"hf_token": "PARETO HF TOKEN"},
        {"hf_token": "1PARETO"},
        {"hf_token": None},
        {"hf_token": 12345},
        ["PARETO_HF_TOKEN"],
        "PARETO_HF_TOKEN",
    ],
)
def test_cluster_create_refuses_a_secret_given_as_a_value(actor, secret_env):
    with refused("secret_env"):
        services.cluster_create(actor=actor, **RAY, secret_env=secret_env)


def test_cluster_create_refuses_a_duplicate_name(actor):
    ClusterFactory(name="local-ray")
    with refused("name"):
        services.cluster_create(actor=actor, **RAY)


def test_cluster_update_audits_the_change(actor):
    cluster = ClusterFactory(name="c1", ray_dashboard_url="http://127.0.0.1:8265")
    services.cluster_update(
        actor=actor, cluster=cluster, ray_dashboard_url="http://10.0.0.5:8265", description="GPU box"
    )

    assert Cluster.objects.get(pk=cluster.pk).ray_dashboard_url == "http://10.0.0.5:8265"
    event = assert_audited(
        "cluster.update",
        actor,
        target=cluster,
        before={"ray_dashboard_url": "http://127.0.0.1:8265", "description": ""},
        after={"ray_dashboard_url": "http://10.0.0.5:8265", "description": "GPU box"},
    )
    assert set(event.after) == {"ray_dashboard_url", "description"}


def test_cluster_update_to_the_same_values_writes_no_event(actor):
    cluster = ClusterFactory(name="c1", secret_env={"hf_token": "PARETO_HF_TOKEN"})
    with no_event():
        services.cluster_update(actor=actor, cluster=cluster, name="c1", secret_env={"hf_token": "PARETO_HF_TOKEN"})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ray_dashboard_url": ""}, "ray_dashboard_url"),
        ({"secret_env": {"hf_token": "hf_secretvalue123"}}, "secret_env"),
        ({"runtime": "kubernetes"}, "kube_auth"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    ],
)
def test_cluster_update_refuses_bad_settings_and_keeps_the_cluster(actor, changes, field):
    cluster = ClusterFactory(name="c1", ray_dashboard_url="http://127.0.0.1:8265")
    with refused(field):
        services.cluster_update(actor=actor, cluster=cluster, **changes)
    stored = Cluster.objects.get(pk=cluster.pk)
    assert (stored.runtime, stored.ray_dashboard_url, stored.secret_env) == ("ray", "http://127.0.0.1:8265", {})


def test_cluster_delete_audits_the_cluster_and_drops_its_inventory(actor):
    row = ClusterGpuInventoryFactory(count=4)
    cluster = row.cluster
    pk = cluster.pk
    services.cluster_delete(actor=actor, cluster=cluster)

    assert not Cluster.objects.filter(pk=pk).exists()
    assert not ClusterGpuInventory.objects.filter(pk=row.pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == ("cluster.delete", "admin", IP, None)
    assert (event.target_id, event.before["name"]) == (str(pk), cluster.name)


# --- cluster inventory ---------------------------------------------------------------------------
def test_cluster_inventory_set_creates_a_row_and_audits_it(actor):
    cluster, gpu = ClusterFactory(), GpuTypeFactory()
    row = services.cluster_inventory_set(actor=actor, cluster=cluster, gpu_type=gpu, count=8)

    assert ClusterGpuInventory.objects.get(cluster=cluster, gpu_type=gpu).count == 8
    assert_audited(
        "cluster_inventory.create",
        actor,
        target=row,
        after={"cluster_id": cluster.pk, "gpu_type_id": gpu.pk, "count": 8},
    )


def test_cluster_inventory_set_updates_a_row_and_audits_the_change(actor):
    row = ClusterGpuInventoryFactory(count=8)
    services.cluster_inventory_set(actor=actor, cluster=row.cluster, gpu_type=row.gpu_type, count="12")

    assert ClusterGpuInventory.objects.get(pk=row.pk).count == 12
    event = assert_audited("cluster_inventory.update", actor, target=row, before={"count": 8}, after={"count": 12})
    assert set(event.after) == {"count"}


def test_cluster_inventory_set_to_the_same_count_writes_no_event(actor):
    row = ClusterGpuInventoryFactory(count=8)
    with no_event():
        services.cluster_inventory_set(actor=actor, cluster=row.cluster, gpu_type=row.gpu_type, count=8)


def test_cluster_inventory_set_to_zero_deletes_the_row_and_audits_it(actor):
    row = ClusterGpuInventoryFactory(count=8)
    pk = row.pk
    assert services.cluster_inventory_set(actor=actor, cluster=row.cluster, gpu_type=row.gpu_type, count=0) is None

    assert not ClusterGpuInventory.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip) == ("cluster_inventory.delete", "admin", IP)
    assert (event.target_id, event.before["count"], event.after) == (str(pk), 8, None)


def test_cluster_inventory_set_zero_without_a_row_does_nothing(actor):
    cluster, gpu = ClusterFactory(), GpuTypeFactory()
    with no_event():
        assert services.cluster_inventory_set(actor=actor, cluster=cluster, gpu_type=gpu, count=0) is None
    assert not ClusterGpuInventory.objects.exists()


@pytest.mark.parametrize("count", [-1, "-3", "abc", None, 2.5, "", True])
def test_cluster_inventory_set_refuses_a_bad_count(actor, count):
    row = ClusterGpuInventoryFactory(count=8)
    with refused("count"):
        services.cluster_inventory_set(actor=actor, cluster=row.cluster, gpu_type=row.gpu_type, count=count)
    assert ClusterGpuInventory.objects.get(pk=row.pk).count == 8


def test_cluster_inventory_set_refuses_a_gpu_type_deleted_meanwhile(actor):
    cluster, gpu = ClusterFactory(), GpuTypeFactory()
    GpuType.objects.filter(pk=gpu.pk).delete()
    with refused("gpu_type"):
        services.cluster_inventory_set(actor=actor, cluster=cluster, gpu_type=gpu, count=4)


def test_cluster_inventory_set_refuses_a_gpu_type_that_does_not_exist(actor):
    cluster = ClusterFactory()
    with refused("gpu_type"):
        services.cluster_inventory_set(
            actor=actor, cluster=cluster, gpu_type=GpuType(pk=987654, sku="GHOST", memory_gib=1), count=4
        )
