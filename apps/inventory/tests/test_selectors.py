"""Price history reads: the price in force at any moment, and current prices for a list in one query."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from apps.inventory.selectors import clusters_with_inventory, gpu_price_at, gpu_types_with_current_price
from apps.inventory.tests.factories import (
    ClusterFactory,
    ClusterGpuInventoryFactory,
    GpuPriceFactory,
    GpuTypeFactory,
)

UTC = dt.UTC
JAN = dt.datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
MAR = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def h100(db):
    gpu = GpuTypeFactory(sku="H100-80GB")
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.0000"), effective_from=JAN)
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("3.5000"), effective_from=MAR)
    # Another type's prices start in between and must never be picked.
    GpuPriceFactory(gpu_type=GpuTypeFactory(sku="A100-80GB"), hourly_price=Decimal("9"), effective_from=JAN + SECOND)
    return gpu


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (JAN - SECOND, None),
        (JAN, Decimal("2.0000")),
        (JAN + SECOND, Decimal("2.0000")),
        (MAR - SECOND, Decimal("2.0000")),
        (MAR, Decimal("3.5000")),
        (MAR + dt.timedelta(days=3650), Decimal("3.5000")),
    ],
    ids=["before-any-price", "at-first-start", "after-first-start", "just-before-change", "at-change", "long-after"],
)
def test_gpu_price_at_gives_the_price_in_force(h100, at, expected):
    price = gpu_price_at(gpu_type=h100, at=at)
    assert (price.hourly_price if price is not None else None) == expected
    if price is not None:
        assert price.gpu_type_id == h100.pk


def test_gpu_price_at_compares_instants_across_time_zones(h100):
    # 07:59:59 in New York on 1 March is 12:59:59 UTC (EST is UTC-5): after the change.
    new_york = ZoneInfo("America/New_York")
    assert gpu_price_at(gpu_type=h100, at=dt.datetime(2025, 3, 1, 7, 59, 59, tzinfo=new_york)).hourly_price == Decimal(
        "3.5"
    )
    # 12:59 in Tokyo on 1 March is 03:59 UTC: before the change.
    tokyo = ZoneInfo("Asia/Tokyo")
    assert gpu_price_at(gpu_type=h100, at=dt.datetime(2025, 3, 1, 12, 59, tzinfo=tokyo)).hourly_price == Decimal("2")


def test_gpu_price_at_returns_aware_utc_moments(h100):
    price = gpu_price_at(gpu_type=h100, at=MAR)
    assert timezone.is_aware(price.effective_from)
    assert price.effective_from.utcoffset() == dt.timedelta(0)
    assert price.effective_from == MAR


def test_gpu_types_with_current_price_in_one_query(db, django_assert_num_queries):
    now = timezone.now()
    priced = GpuTypeFactory(sku="H100-80GB")
    GpuPriceFactory(gpu_type=priced, hourly_price=Decimal("2"), effective_from=now - dt.timedelta(days=60))
    GpuPriceFactory(
        gpu_type=priced, hourly_price=Decimal("3"), currency="EUR", effective_from=now - dt.timedelta(days=1)
    )
    GpuPriceFactory(gpu_type=priced, hourly_price=Decimal("4"), effective_from=now + dt.timedelta(days=7))  # scheduled
    example = GpuTypeFactory(sku="L4-24GB")
    GpuPriceFactory(
        gpu_type=example, hourly_price=Decimal("0.8"), is_example=True, effective_from=now - dt.timedelta(1)
    )
    for n in range(5):
        GpuTypeFactory(sku=f"Z{n}-8GB")  # no price yet

    with django_assert_num_queries(1):
        rows = [
            (g.sku, g.current_price, g.current_currency, g.current_is_example) for g in gpu_types_with_current_price()
        ]

    assert rows[:2] == [
        ("H100-80GB", Decimal("3.0000"), "EUR", False),
        ("L4-24GB", Decimal("0.8000"), "USD", True),
    ]
    assert rows[2:] == [(f"Z{n}-8GB", None, None, None) for n in range(5)]


def test_gpu_types_with_current_price_at_a_past_moment(h100):
    by_sku = {g.sku: g.current_price for g in gpu_types_with_current_price(at=MAR - SECOND)}
    assert by_sku == {"A100-80GB": Decimal("9.0000"), "H100-80GB": Decimal("2.0000")}
    by_sku = {g.sku: g.current_price for g in gpu_types_with_current_price(at=JAN - SECOND)}
    assert by_sku == {"A100-80GB": None, "H100-80GB": None}


def test_clusters_with_inventory_does_not_query_per_cluster(db, django_assert_num_queries):
    for n in range(4):
        cluster = ClusterFactory(name=f"c{n}")
        for m in range(3):
            ClusterGpuInventoryFactory(cluster=cluster, gpu_type=GpuTypeFactory(sku=f"G{n}{m}-8GB"), count=n + m + 1)
    ClusterFactory(name="empty")

    with django_assert_num_queries(3):  # clusters, their inventory, the GPU types
        listing = {
            c.name: sorted((row.gpu_type.sku, row.count) for row in c.inventory.all())
            for c in clusters_with_inventory()
        }

    assert list(listing) == ["c0", "c1", "c2", "c3", "empty"]
    assert listing["c2"] == [("G20-8GB", 3), ("G21-8GB", 4), ("G22-8GB", 5)]
    assert listing["empty"] == []
