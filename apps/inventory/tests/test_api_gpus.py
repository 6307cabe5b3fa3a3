from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.inventory.models import GpuPrice, GpuType
from apps.inventory.tests.factories import GpuPriceFactory, GpuTypeFactory

pytestmark = pytest.mark.django_db

TYPES = reverse("api:gpu-types-list")
PRICES = reverse("api:gpu-prices-list")
SIGNED_IN = ["member_user", "lead_user", "other_lead", "finance_user", "admin_user"]
# session, user, memberships (roles), count, page, session save (3)
LIST_QUERIES = 8


@pytest.fixture
def h100() -> GpuType:
    gpu = GpuTypeFactory(sku="H100-80GB")
    now = timezone.now()
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.0000"), effective_from=now - dt.timedelta(days=60))
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.5000"), effective_from=now - dt.timedelta(days=1))
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("3.0000"), effective_from=now + dt.timedelta(days=10))
    return gpu


def type_url(gpu: GpuType) -> str:
    return reverse("api:gpu-types-detail", args=[gpu.pk])


def price_url(price: GpuPrice) -> str:
    return reverse("api:gpu-prices-detail", args=[price.pk])


def price_payload(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "gpu_type": "H100-80GB",
        "hourly_price": "3.5000",
        "currency": "USD",
        "effective_from": (timezone.now() + dt.timedelta(days=30)).isoformat(),
    }
    data.update(overrides)
    return data


# --- GPU types ------------------------------------------------------------------------------------
def test_anonymous_gets_401(client_for, h100):
    assert client_for(None).get(TYPES).status_code == 401
    assert client_for(None).get(PRICES).status_code == 401


@pytest.mark.parametrize("role", SIGNED_IN)
def test_every_role_reads_gpu_types_with_the_price_in_force_now(request, client_for, h100, role):
    GpuTypeFactory(sku="A10-24GB")
    rows = client_for(request.getfixturevalue(role)).get(TYPES).json()["results"]
    assert [(r["sku"], r["current_price"], r["current_currency"]) for r in rows] == [
        ("A10-24GB", None, None),
        ("H100-80GB", "2.5000", "USD"),
    ]


def test_admin_creates_a_gpu_type_with_an_audit_event(client_for, admin_user):
    response = client_for(admin_user).post(
        TYPES, {"sku": "L4-24GB", "memory_gib": 24, "ray_accelerator_type": "L4"}, content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["current_price"] is None
    gpu = GpuType.objects.get(sku="L4-24GB")
    assert AuditEvent.objects.get(action="gpu_type.create").target_id == str(gpu.pk)


def test_gpu_type_update_answers_with_the_current_price(client_for, admin_user, h100):
    response = client_for(admin_user).patch(type_url(h100), {"memory_gib": 94}, content_type="application/json")
    assert response.status_code == 200
    assert (response.json()["memory_gib"], response.json()["current_price"]) == (94, "2.5000")
    assert AuditEvent.objects.get(action="gpu_type.update").after == {"memory_gib": 94}


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_write_gpu_types(request, client_for, h100, role):
    client = client_for(request.getfixturevalue(role))
    assert client.post(TYPES, {"sku": "X", "memory_gib": 1}, content_type="application/json").status_code == 403
    assert client.patch(type_url(h100), {"memory_gib": 1}, content_type="application/json").status_code == 403
    assert client.delete(type_url(h100)).status_code == 403
    assert list(GpuType.objects.values_list("sku", "memory_gib")) == [("H100-80GB", 80)]


@pytest.mark.parametrize(
    ("data", "field"), [({"sku": "H100-80GB", "memory_gib": 80}, "sku"), ({"sku": "Z", "memory_gib": 0}, "memory_gib")]
)
def test_bad_gpu_type_input_names_the_field(client_for, admin_user, h100, data, field):
    response = client_for(admin_user).post(TYPES, data, content_type="application/json")
    assert response.status_code == 400 and field in response.json()
    assert GpuType.objects.count() == 1
    assert not AuditEvent.objects.exists()


def test_gpu_type_list_query_count_is_constant(client_for, member_user, django_assert_max_num_queries):
    for gpu in GpuTypeFactory.create_batch(12):
        GpuPriceFactory(gpu_type=gpu)
    client = client_for(member_user)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(TYPES)
    assert response.json()["count"] == 12
    assert all(row["current_price"] == "2.5000" for row in response.json()["results"])


# --- GPU prices -----------------------------------------------------------------------------------
@pytest.mark.parametrize("role", SIGNED_IN)
def test_every_role_reads_the_price_history(request, client_for, h100, role):
    GpuPriceFactory(gpu_type=GpuTypeFactory(sku="A10-24GB"))
    client = client_for(request.getfixturevalue(role))
    rows = client.get(PRICES, {"gpu_type": "H100-80GB"}).json()["results"]
    assert [(r["hourly_price"], r["is_scheduled"]) for r in rows] == [
        ("3.0000", True),
        ("2.5000", False),
        ("2.0000", False),
    ]
    assert client.get(PRICES).json()["count"] == 4


def test_admin_adds_a_price_with_an_audit_event(client_for, admin_user, h100):
    response = client_for(admin_user).post(PRICES, price_payload(note="Q3 contract"), content_type="application/json")
    assert response.status_code == 201, response.json()
    price = GpuPrice.objects.get(pk=response.json()["id"])
    assert (price.gpu_type, price.hourly_price, price.note) == (h100, Decimal("3.5000"), "Q3 contract")
    event = AuditEvent.objects.get(action="gpu_price.add")
    assert event.actor == admin_user and event.target_id == str(price.pk)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hourly_price": "-1.00"}, "hourly_price"),
        ({"hourly_price": "cheap"}, "hourly_price"),
        ({"gpu_type": "NO-SUCH-GPU"}, "gpu_type"),
        ({"currency": "dollars"}, "currency"),
        # Starts before the scheduled 3.00 price: the periods would overlap.
        ({"effective_from": (timezone.now() + dt.timedelta(days=5)).isoformat()}, "effective_from"),
        ({"effective_from": "not a date"}, "effective_from"),
    ],
)
def test_bad_price_input_names_the_field_and_adds_nothing(client_for, admin_user, h100, overrides, field):
    response = client_for(admin_user).post(PRICES, price_payload(**overrides), content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert GpuPrice.objects.count() == 3
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_write_prices(request, client_for, h100, role):
    client = client_for(request.getfixturevalue(role))
    scheduled = GpuPrice.objects.get(hourly_price=Decimal("3.0000"))
    assert client.post(PRICES, price_payload(), content_type="application/json").status_code == 403
    assert client.delete(price_url(scheduled)).status_code == 403
    assert GpuPrice.objects.count() == 3


def test_prices_are_never_edited(client_for, admin_user, h100):
    price = GpuPrice.objects.get(hourly_price=Decimal("3.0000"))
    response = client_for(admin_user).patch(price_url(price), {"hourly_price": "1.0"}, content_type="application/json")
    assert response.status_code == 405
    price.refresh_from_db()
    assert price.hourly_price == Decimal("3.0000")


def test_admin_withdraws_a_scheduled_price_but_not_one_in_force(client_for, admin_user, h100):
    client = client_for(admin_user)
    scheduled = GpuPrice.objects.get(hourly_price=Decimal("3.0000"))
    in_force = GpuPrice.objects.get(hourly_price=Decimal("2.5000"))
    refused = client.delete(price_url(in_force))
    assert refused.status_code == 400 and "non_field_errors" in refused.json()
    assert GpuPrice.objects.filter(pk=in_force.pk).exists()
    assert client.delete(price_url(scheduled)).status_code == 204
    assert not GpuPrice.objects.filter(pk=scheduled.pk).exists()
    assert [e.action for e in AuditEvent.objects.all()] == ["gpu_price.delete"]


def test_price_list_query_count_is_constant(client_for, member_user, django_assert_max_num_queries):
    for gpu in GpuTypeFactory.create_batch(6):
        GpuPriceFactory(gpu_type=gpu)
        GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=3))
    client = client_for(member_user)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = client.get(PRICES)
    assert response.json()["count"] == 12
