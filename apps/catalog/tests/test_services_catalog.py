"""Catalog services: every change is audited, bad input changes nothing."""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.audit.tests import checks
from apps.audit.tests.checks import no_event
from apps.catalog import services
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.inventory.models import GpuType
from apps.inventory.tests.factories import GpuTypeFactory

IP = "2001:db8::42"

LLAMA = {
    "name": "llama-3.1-8b-instruct",
    "source": "meta-llama/Llama-3.1-8B-Instruct",
    "family": "llama",
    "parameter_count": 8_030_000_000,
    "context_length": 131072,
    "num_layers": 32,
    "hidden_size": 4096,
    "num_attention_heads": 32,
    "num_kv_heads": 8,
    "head_dim": 128,
}


@pytest.fixture
def actor(admin_user) -> Actor:
    return Actor(user=admin_user, source_ip=IP)


def last_event(action: str, actor: Actor, target: CatalogModel) -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    assert event.action == action
    assert (event.actor_id, event.actor_label, event.source_ip) == (actor.user.pk, actor.label, IP)
    assert event.team_id is None  # the catalog is platform-wide
    assert (event.target_type, event.target_id) == ("catalog.catalogmodel", str(target.pk))
    return event


def refused(field: str) -> AbstractContextManager[pytest.ExceptionInfo[ValidationError]]:
    return checks.refused(field, CatalogModel)


def test_catalog_model_create_audits_the_model(actor):
    gpu = GpuTypeFactory(sku="L4-24GB")
    model = services.catalog_model_create(
        actor=actor,
        **LLAMA,
        quality_score=Decimal("68.4"),
        quality_source="MMLU 5-shot",
        recommended_gpu_type=gpu,
        default_engine_args={"max_model_len": 8192},
    )

    stored = CatalogModel.objects.get(name=LLAMA["name"])
    assert (stored.status, stored.recommended_gpu_type_id) == ("approved", gpu.pk)
    event = last_event("catalog_model.create", actor, model)
    assert event.before is None
    assert {
        "name": LLAMA["name"],
        "num_kv_heads": 8,
        "quality_score": "68.40",
        "recommended_gpu_type_id": gpu.pk,
        "default_engine_args": {"max_model_len": 8192},
        "status": "approved",
    }.items() <= event.after.items()


@pytest.mark.parametrize(
    ("heads", "kv_heads", "message"),
    [
        (32, 64, "cannot exceed"),
        ("32", "64", "cannot exceed"),
        (32, 6, "multiple"),
        ("32", "6", "multiple"),
        (12, 5, "multiple"),
    ],
)
def test_catalog_model_create_refuses_kv_heads_that_do_not_divide_the_heads(actor, heads, kv_heads, message):
    with refused("num_kv_heads") as info:
        services.catalog_model_create(actor=actor, **{**LLAMA, "num_attention_heads": heads, "num_kv_heads": kv_heads})
    assert message in str(info.value.message_dict["num_kv_heads"])


@pytest.mark.parametrize("kv_heads", [1, 8, 32])
def test_catalog_model_create_accepts_kv_heads_that_divide_the_heads(actor, kv_heads):
    model = services.catalog_model_create(actor=actor, **{**LLAMA, "num_kv_heads": kv_heads})
    assert model.num_kv_heads == kv_heads


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quality_score": Decimal("70")}, "quality_source"),
        ({"quality_score": Decimal("101"), "quality_source": "x"}, "quality_score"),
        ({"default_engine_args": ["--max-model-len", "8192"]}, "default_engine_args"),
        ({"status": "preview"}, "status"),
        ({"parameter_count": 0}, "parameter_count"),
        ({"context_length": "long"}, "context_length"),
        ({"num_kv_heads": 0}, "num_kv_heads"),
        ({"name": ""}, "name"),
        ({"source": ""}, "source"),
        ({"recommended_gpu_count": 0}, "recommended_gpu_count"),
        ({"endpoint_count": 3}, "endpoint_count"),
    ],
)
def test_catalog_model_create_refuses_bad_fields(actor, changes, field):
    with refused(field):
        services.catalog_model_create(actor=actor, **{**LLAMA, **changes})


def test_catalog_model_create_refuses_a_duplicate_name(actor):
    CatalogModelFactory(name=LLAMA["name"])
    with refused("name"):
        services.catalog_model_create(actor=actor, **LLAMA)


def test_catalog_model_create_refuses_a_recommended_gpu_type_deleted_meanwhile(actor):
    gpu = GpuTypeFactory()
    GpuType.objects.filter(pk=gpu.pk).delete()
    with refused("recommended_gpu_type"):
        services.catalog_model_create(actor=actor, **LLAMA, recommended_gpu_type=gpu)


def test_catalog_model_update_audits_only_what_changed(actor):
    model = CatalogModelFactory(context_length=8192, license="llama3")
    services.catalog_model_update(actor=actor, model=model, context_length=131072, license="llama3")

    assert CatalogModel.objects.get(pk=model.pk).context_length == 131072
    event = last_event("catalog_model.update", actor, model)
    assert (event.before, event.after) == ({"context_length": 8192}, {"context_length": 131072})


def test_catalog_model_update_to_the_same_values_writes_no_event(actor):
    model = CatalogModelFactory(num_attention_heads=32, num_kv_heads=8)
    with no_event():
        services.catalog_model_update(actor=actor, model=model, num_attention_heads="32", num_kv_heads=8)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"num_kv_heads": 64}, "num_kv_heads"),
        ({"num_attention_heads": 12}, "num_kv_heads"),  # 12 is no multiple of the stored 8 KV heads
        ({"quality_score": Decimal("50")}, "quality_source"),
        ({"created_at": None}, "created_at"),
    ],
)
def test_catalog_model_update_refuses_bad_changes_and_keeps_the_model(actor, changes, field):
    model = CatalogModelFactory(num_attention_heads=32, num_kv_heads=8)
    with refused(field):
        services.catalog_model_update(actor=actor, model=model, **changes)
    stored = CatalogModel.objects.get(pk=model.pk)
    assert (stored.num_attention_heads, stored.num_kv_heads, stored.quality_score) == (32, 8, None)


def test_catalog_model_set_status_audits_the_change(actor):
    model = CatalogModelFactory()
    services.catalog_model_set_status(actor=actor, model=model, status=CatalogModel.Status.DEPRECATED)

    assert CatalogModel.objects.get(pk=model.pk).status == "deprecated"
    event = last_event("catalog_model.status", actor, model)
    assert (event.before, event.after) == ({"status": "approved"}, {"status": "deprecated"})


def test_catalog_model_set_status_to_the_same_status_writes_no_event(actor):
    model = CatalogModelFactory()
    with no_event():
        services.catalog_model_set_status(actor=actor, model=model, status="approved")


def test_catalog_model_set_status_refuses_an_unknown_status(actor):
    model = CatalogModelFactory()
    with refused("status"):
        services.catalog_model_set_status(actor=actor, model=model, status="retired")
    assert CatalogModel.objects.get(pk=model.pk).status == "approved"


def test_catalog_model_delete_audits_the_model(actor):
    model = CatalogModelFactory(name="doomed")
    pk = model.pk
    services.catalog_model_delete(actor=actor, model=model)

    assert not CatalogModel.objects.filter(pk=pk).exists()
    event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.actor_label, event.source_ip, event.team_id) == (
        "catalog_model.delete",
        "admin",
        IP,
        None,
    )
    assert (event.target_id, event.target_label, event.before["name"], event.after) == (
        str(pk),
        "doomed",
        "doomed",
        None,
    )
