"""GPU types and prices: everyone reads the current price and the history; admins add types and prices."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.inventory.models import GpuPrice, GpuType
from apps.inventory.tests.factories import GpuPriceFactory, GpuTypeFactory
from apps.inventory.views import format_amount, price_periods
from apps.teams.tests.factories import GpuQuotaFactory

ROLES = ("member_user", "lead_user", "finance_user", "admin_user")


def state() -> tuple:
    return (
        list(GpuType.objects.order_by("pk").values()),
        list(GpuPrice.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )


def field_errors(response, field: str) -> list[str]:
    """Errors shown next to `field`: in the form, and rendered in the page close after that field's input."""
    errors = response.context["form"].errors.get(field, [])
    html = response.content.decode()
    for message in errors:
        escaped = message.replace("'", "&#x27;").replace('"', "&quot;").replace(">", "&gt;")
        field_at = html.index(f'name="{field}"')
        assert escaped in html[field_at : field_at + 2000], f"{message!r} is not shown next to {field}"
    return errors


def last_event() -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    return event


def local_input(moment: dt.datetime) -> str:
    """How a datetime-local input sends a moment (in the site's time zone, to the minute)."""
    return timezone.localtime(moment).strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def gpu(db) -> GpuType:
    return GpuTypeFactory(sku="H100-80GB", memory_gib=80)


# --- who may open what --------------------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
def test_every_signed_in_role_sees_gpu_types_and_prices(request, client_for, gpu, role):
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.4900"))
    response = client_for(request.getfixturevalue(role)).get(reverse("inventory:gpu_types"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "H100-80GB" in html and "2.49" in html


def test_anonymous_is_sent_to_sign_in(client_for, gpu):
    for url in (
        reverse("inventory:gpu_types"),
        reverse("inventory:gpu_type_create"),
        reverse("inventory:gpu_price_add", args=[gpu.pk]),
    ):
        response = client_for(None).get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize(("role", "status"), [*((r, 403) for r in ROLES[:-1]), ("admin_user", 200)])
def test_only_admins_open_the_gpu_forms(request, client_for, gpu, role, status):
    scheduled = GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=3))
    client = client_for(request.getfixturevalue(role))
    for url in (
        reverse("inventory:gpu_type_create"),
        reverse("inventory:gpu_type_edit", args=[gpu.pk]),
        reverse("inventory:gpu_type_delete", args=[gpu.pk]),
        reverse("inventory:gpu_price_add", args=[gpu.pk]),
        reverse("inventory:gpu_price_delete", args=[scheduled.pk]),
    ):
        assert client.get(url).status_code == status, url


@pytest.mark.parametrize("role", ROLES[:-1])
def test_non_admin_posts_change_nothing(request, client_for, gpu, role):
    scheduled = GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=3))
    client = client_for(request.getfixturevalue(role))
    before = state()
    tomorrow = local_input(timezone.now() + dt.timedelta(days=10))
    for url, data in (
        (reverse("inventory:gpu_type_create"), {"sku": "B200", "memory_gib": "192"}),
        (reverse("inventory:gpu_type_edit", args=[gpu.pk]), {"sku": "X", "memory_gib": "1"}),
        (reverse("inventory:gpu_type_delete", args=[gpu.pk]), {}),
        (
            reverse("inventory:gpu_price_add", args=[gpu.pk]),
            {"hourly_price": "1", "currency": "USD", "effective_from": tomorrow},
        ),
        (reverse("inventory:gpu_price_delete", args=[scheduled.pk]), {}),
    ):
        assert client.post(url, data).status_code == 403, url
    assert state() == before


# --- the list -----------------------------------------------------------------------------------
def test_current_price_and_history_newest_first_with_periods(client_for, member_user, gpu):
    now = timezone.now()
    old = GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("3.1000"), effective_from=now - dt.timedelta(days=90))
    current = GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.7500"), effective_from=now - dt.timedelta(days=9))
    future = GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.0125"), effective_from=now + dt.timedelta(days=5))
    response = client_for(member_user).get(reverse("inventory:gpu_types"))
    (row,) = response.context["rows"]
    assert row.current_price == "2.75"
    assert [(p.price, p.until, p.state) for p in row.periods] == [
        (future, None, "scheduled"),
        (current, future.effective_from, "current"),
        (old, current.effective_from, "past"),
    ]
    html = response.content.decode()
    assert html.index("2.0125") < html.index("2.75 USD") < html.index("3.10")
    start = timezone.localtime(current.effective_from).strftime("%Y-%m-%d %H:%M")
    until = timezone.localtime(future.effective_from).strftime("%Y-%m-%d %H:%M")
    assert start in html and until in html
    # Members see no way to withdraw the scheduled price.
    assert reverse("inventory:gpu_price_delete", args=[future.pk]) not in html


def test_example_prices_are_marked(client_for, member_user, gpu):
    GpuPriceFactory(gpu_type=gpu, is_example=True)
    real = GpuTypeFactory(sku="A100-80GB")
    GpuPriceFactory(gpu_type=real, is_example=False)
    response = client_for(member_user).get(reverse("inventory:gpu_types"))
    html = response.content.decode()
    h100 = html[html.index(f'id="gpu-{gpu.pk}"') :]
    a100 = html[html.index(f'id="gpu-{real.pk}"') : html.index(f'id="gpu-{gpu.pk}"')]
    assert "example price" in h100
    assert "example price" not in a100


def test_a_type_without_a_price_in_force_says_so(client_for, member_user, gpu):
    GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=1))
    html = client_for(member_user).get(reverse("inventory:gpu_types")).content.decode()
    assert "No price in force" in html


def test_empty_states(client_for, member_user, admin_user, db):
    assert "No GPU types yet." in client_for(member_user).get(reverse("inventory:gpu_types")).content.decode()
    admin_html = client_for(admin_user).get(reverse("inventory:gpu_types")).content.decode()
    assert "Add the first GPU type" in admin_html
    GpuTypeFactory(sku="L4-24GB")
    assert "No price yet." in client_for(member_user).get(reverse("inventory:gpu_types")).content.decode()


def test_gpu_types_query_count_does_not_grow(client_for, member_user, django_assert_max_num_queries, db):
    client = client_for(member_user)
    url = reverse("inventory:gpu_types")
    now = timezone.now()

    def add(n: int) -> None:
        for _ in range(n):
            gpu_type = GpuTypeFactory()
            GpuPriceFactory(gpu_type=gpu_type, effective_from=now - dt.timedelta(days=20))
            GpuPriceFactory(gpu_type=gpu_type, effective_from=now - dt.timedelta(days=2), is_example=True)

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx, django_assert_max_num_queries(8):
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    add(3)
    with_three = count()
    add(7)
    assert count() == with_three


def test_price_periods_from_a_newest_first_history():
    now = timezone.now()
    prices = [GpuPrice(effective_from=now + dt.timedelta(hours=h)) for h in (48, 24, -1, -30)]
    periods = price_periods(prices, now)
    assert [p.state for p in periods] == ["scheduled", "scheduled", "current", "past"]
    assert [p.until for p in periods] == [
        None,
        prices[0].effective_from,
        prices[1].effective_from,
        prices[2].effective_from,
    ]
    assert price_periods([], now) == []


@pytest.mark.parametrize(
    ("amount", "label"),
    [("2.5000", "2.50"), ("0.0125", "0.0125"), ("3", "3.00"), ("10.1230", "10.123"), ("0.0000", "0.00")],
)
def test_prices_show_cents_and_only_the_sub_cent_digits_they_have(amount, label):
    assert format_amount(Decimal(amount)) == label


# --- GPU types ----------------------------------------------------------------------------------
def test_admin_adds_a_gpu_type_and_is_led_to_its_price(client_for, admin_user, db):
    data = {
        "sku": "B200-192GB",
        "memory_gib": "192",
        "node_selector_label": "nvidia.com/gpu.product",
        "node_selector_value": "NVIDIA-B200",
        "ray_accelerator_type": "B200",
    }
    response = client_for(admin_user).post(reverse("inventory:gpu_type_create"), data)
    gpu_type = GpuType.objects.get(sku="B200-192GB")
    assert response["Location"] == reverse("inventory:gpu_price_add", args=[gpu_type.pk])
    assert gpu_type.memory_gib == 192
    event = last_event()
    assert (event.action, event.actor_id, event.after["sku"]) == ("gpu_type.create", admin_user.pk, "B200-192GB")


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"sku": "", "memory_gib": "80"}, "sku", "This field is required."),
        ({"sku": "H100-80GB", "memory_gib": "80"}, "sku", "already exists"),
        ({"sku": "X1", "memory_gib": "0"}, "memory_gib", "greater than or equal to 1"),
        ({"sku": "X1", "memory_gib": "-8"}, "memory_gib", "greater than or equal to"),
    ],
)
def test_bad_gpu_type_is_shown_next_to_the_field_and_adds_nothing(client_for, admin_user, gpu, data, field, message):
    before = state()
    response = client_for(admin_user).post(reverse("inventory:gpu_type_create"), data)
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert state() == before


def test_admin_edits_a_gpu_type(client_for, admin_user, gpu):
    data = {
        "sku": gpu.sku,
        "memory_gib": "94",
        "node_selector_label": gpu.node_selector_label,
        "node_selector_value": gpu.node_selector_value,
        "ray_accelerator_type": "H100",
    }
    response = client_for(admin_user).post(reverse("inventory:gpu_type_edit", args=[gpu.pk]), data)
    assert response.status_code == 302
    gpu.refresh_from_db()
    assert gpu.memory_gib == 94
    event = last_event()
    assert (event.action, event.before, event.after) == ("gpu_type.update", {"memory_gib": 80}, {"memory_gib": 94})


def test_a_gpu_type_in_use_cannot_be_deleted_and_the_page_says_why(client_for, admin_user, gpu, team_a):
    GpuQuotaFactory(team=team_a, gpu_type=gpu)
    before = state()
    response = client_for(admin_user).post(reverse("inventory:gpu_type_delete", args=[gpu.pk]))
    assert response.status_code == 409
    assert "still used by: gpu quotas" in response.content.decode()
    assert state() == before


def test_an_unused_gpu_type_is_deleted_after_confirming(client_for, admin_user, gpu):
    client = client_for(admin_user)
    assert client.get(reverse("inventory:gpu_type_delete", args=[gpu.pk])).status_code == 200
    assert GpuType.objects.filter(pk=gpu.pk).exists()
    assert client.post(reverse("inventory:gpu_type_delete", args=[gpu.pk])).status_code == 302
    assert not GpuType.objects.filter(pk=gpu.pk).exists()
    assert last_event().action == "gpu_type.delete"


# --- prices -------------------------------------------------------------------------------------
def price_post(moment: dt.datetime, **overrides) -> dict:
    return {"hourly_price": "2.2500", "currency": "USD", "effective_from": local_input(moment), "note": "", **overrides}


def test_admin_adds_a_price_and_the_change_is_audited(client_for, admin_user, gpu):
    GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() - dt.timedelta(days=30))
    start = (timezone.now() + dt.timedelta(days=7)).replace(second=0, microsecond=0)
    response = client_for(admin_user).post(
        reverse("inventory:gpu_price_add", args=[gpu.pk]), price_post(start, is_example="on", note="list price")
    )
    assert response.status_code == 302
    price = GpuPrice.objects.filter(gpu_type=gpu).order_by("-effective_from").first()
    assert (price.hourly_price, price.effective_from, price.is_example, price.note) == (
        Decimal("2.2500"),
        start,
        True,
        "list price",
    )
    event = last_event()
    assert (event.action, event.target_id, event.after["hourly_price"]) == ("gpu_price.add", str(price.pk), "2.2500")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"hourly_price": "-0.01"}, "hourly_price", "The price cannot be negative."),
        ({"hourly_price": "abc"}, "hourly_price", "Enter a number."),
        ({"currency": "usd"}, "currency", "three-letter ISO 4217 code"),
        ({"effective_from": "yesterday"}, "effective_from", "Enter a valid date/time."),
    ],
)
def test_bad_price_is_shown_next_to_the_field_and_adds_nothing(client_for, admin_user, gpu, overrides, field, message):
    before = state()
    response = client_for(admin_user).post(
        reverse("inventory:gpu_price_add", args=[gpu.pk]),
        price_post(timezone.now() + dt.timedelta(days=1), **overrides),
    )
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert state() == before


@pytest.mark.parametrize("offset", [dt.timedelta(days=-1), dt.timedelta(0)])
def test_a_price_overlapping_the_latest_period_is_refused_next_to_its_start(client_for, admin_user, gpu, offset):
    latest = GpuPriceFactory(
        gpu_type=gpu, effective_from=(timezone.now() + dt.timedelta(days=2)).replace(second=0, microsecond=0)
    )
    before = state()
    response = client_for(admin_user).post(
        reverse("inventory:gpu_price_add", args=[gpu.pk]), price_post(latest.effective_from + offset)
    )
    assert response.status_code == 200
    (error,) = field_errors(response, "effective_from")
    assert error.startswith("Overlaps the price period")
    assert state() == before


def test_price_form_names_the_latest_price(client_for, admin_user, gpu):
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("4.1000"))
    html = client_for(admin_user).get(reverse("inventory:gpu_price_add", args=[gpu.pk])).content.decode()
    assert "The latest price of H100-80GB is 4.1000 USD/h" in html


def test_price_of_unknown_gpu_type_is_404(client_for, admin_user, db):
    before = state()
    response = client_for(admin_user).post(
        reverse("inventory:gpu_price_add", args=[999999]), price_post(timezone.now() + dt.timedelta(days=1))
    )
    assert response.status_code == 404
    assert state() == before


def test_a_scheduled_price_is_withdrawn_after_confirming(client_for, admin_user, gpu):
    scheduled = GpuPriceFactory(gpu_type=gpu, effective_from=timezone.now() + dt.timedelta(days=3))
    client = client_for(admin_user)
    listing = client.get(reverse("inventory:gpu_types")).content.decode()
    assert reverse("inventory:gpu_price_delete", args=[scheduled.pk]) in listing
    confirm = client.get(reverse("inventory:gpu_price_delete", args=[scheduled.pk]))
    assert confirm.status_code == 200 and "Withdraw price" in confirm.content.decode()
    assert GpuPrice.objects.filter(pk=scheduled.pk).exists()
    assert client.post(reverse("inventory:gpu_price_delete", args=[scheduled.pk])).status_code == 302
    assert not GpuPrice.objects.filter(pk=scheduled.pk).exists()
    event = last_event()
    assert (event.action, event.target_id) == ("gpu_price.delete", str(scheduled.pk))


def test_a_price_in_force_cannot_be_deleted(client_for, admin_user, gpu):
    in_force = GpuPriceFactory(gpu_type=gpu)
    before = state()
    response = client_for(admin_user).post(reverse("inventory:gpu_price_delete", args=[in_force.pk]))
    assert response.status_code == 409
    assert "already in force" in response.content.decode()
    assert state() == before
