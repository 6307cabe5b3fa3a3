from __future__ import annotations

import datetime as dt
from decimal import Decimal

from apps.endpoints.models import Endpoint
from apps.endpoints.tests.factories import EndpointFactory
from apps.inventory.models import Cluster
from apps.inventory.tests.factories import ClusterFactory, GpuPriceFactory, GpuTypeFactory
from apps.teams.models import Team


def metered_endpoint(
    *,
    team: Team,
    name: str = "chat",
    gpus_per_replica: int = 1,
    min_replicas: int = 1,
    max_replicas: int = 1,
    observed_replicas: int = 1,
    state: str = Endpoint.State.READY,
    created_at: dt.datetime | None = None,
    price: Decimal | None = Decimal("2.5000"),
    sku: str = "H100-80GB",
    cluster: Cluster | None = None,
    metrics_urls: str = "",
) -> Endpoint:
    gpu = GpuTypeFactory(sku=sku)
    if price is not None and not gpu.prices.exists():
        GpuPriceFactory(gpu_type=gpu, hourly_price=price, effective_from=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    endpoint = EndpointFactory(
        team=team,
        name=name,
        gpu_type=gpu,
        gpus_per_replica=gpus_per_replica,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        observed_replicas=observed_replicas,
        state=state,
        cluster=cluster or ClusterFactory(metrics_urls=metrics_urls),
    )
    if created_at is not None:
        Endpoint.objects.filter(pk=endpoint.pk).update(created_at=created_at)
        endpoint.refresh_from_db()
    return endpoint
