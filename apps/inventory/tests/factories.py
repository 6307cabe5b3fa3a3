from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.utils import timezone

from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice, GpuType


class GpuTypeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GpuType
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"GPU{n}-80GB")
    memory_gib = 80
    node_selector_label = "nvidia.com/gpu.product"
    node_selector_value = factory.LazyAttribute(lambda g: g.sku)
    ray_accelerator_type = factory.LazyAttribute(lambda g: g.sku.split("-")[0])


class GpuPriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GpuPrice

    gpu_type = factory.SubFactory(GpuTypeFactory)
    hourly_price = Decimal("2.5000")
    currency = "USD"
    effective_from = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=30))


class ClusterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cluster

    name = factory.Sequence(lambda n: f"cluster-{n}")
    runtime = Cluster.Runtime.RAY
    ray_dashboard_url = "http://127.0.0.1:8265"


class ClusterGpuInventoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ClusterGpuInventory

    cluster = factory.SubFactory(ClusterFactory)
    gpu_type = factory.SubFactory(GpuTypeFactory)
    count = 16
