"""Catalog models in the Django admin: every change is audited, the portal's rules still apply."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.core.tests.adminform import page_data, submit, superuser


def state() -> tuple:
    return list(CatalogModel.objects.order_by("pk").values()), AuditEvent.objects.count()


@pytest.fixture
def root(db):
    return superuser()


@pytest.fixture
def model(db) -> CatalogModel:
    return CatalogModelFactory(name="phi-3-mini", num_attention_heads=32, num_kv_heads=32)


def change_url(model: CatalogModel) -> str:
    return reverse("admin:catalog_catalogmodel_change", args=[model.pk])


def test_a_change_through_the_admin_writes_an_audit_event(client_for, root, model):
    response = submit(client_for(root), change_url(model), quality_score="55.50", quality_source="Open LLM board")
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    model.refresh_from_db()
    assert model.quality_score == Decimal("55.50")
    event = AuditEvent.objects.get(action="catalog_model.admin_update")
    assert (event.actor_id, event.actor_label, event.target_type, event.target_id) == (
        root.pk,
        "root",
        "catalog.catalogmodel",
        str(model.pk),
    )
    assert event.before == {"quality_score": None, "quality_source": ""}
    assert event.after == {"quality_score": "55.50", "quality_source": "Open LLM board"}
    assert event.source_ip == "127.0.0.1"


def test_saving_without_a_change_writes_no_event(client_for, root, model):
    assert submit(client_for(root), change_url(model)).status_code == 302
    assert not AuditEvent.objects.filter(action="catalog_model.admin_update").exists()


def test_adding_through_the_admin_is_audited(client_for, root):
    client = client_for(root)
    response = submit(
        client,
        reverse("admin:catalog_catalogmodel_add"),
        name="gemma-2-9b",
        source="google/gemma-2-9b-it",
        parameter_count="9241705984",
        context_length="8192",
        num_layers="42",
        hidden_size="3584",
        num_attention_heads="16",
        num_kv_heads="8",
        head_dim="256",
        recommended_gpu_count="1",
    )
    assert response.status_code == 302
    model = CatalogModel.objects.get(name="gemma-2-9b")
    event = AuditEvent.objects.get(action="catalog_model.admin_create")
    assert event.target_id == str(model.pk)
    assert event.after["num_layers"] == 42 and event.after["default_engine_args"] == {}


def test_deleting_through_the_admin_is_audited(client_for, root, model):
    response = client_for(root).post(reverse("admin:catalog_catalogmodel_delete", args=[model.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not CatalogModel.objects.filter(pk=model.pk).exists()
    event = AuditEvent.objects.get(action="catalog_model.admin_delete")
    assert (event.target_id, event.target_label, event.before["name"]) == (str(model.pk), "phi-3-mini", "phi-3-mini")


def test_bulk_delete_records_one_event_per_model(client_for, root, model):
    other = CatalogModelFactory()
    response = client_for(root).post(
        reverse("admin:catalog_catalogmodel_changelist"),
        {"action": "delete_selected", "_selected_action": [model.pk, other.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert not CatalogModel.objects.exists()
    deleted = AuditEvent.objects.filter(action="catalog_model.admin_delete")
    assert sorted(deleted.values_list("target_id", flat=True)) == sorted([str(model.pk), str(other.pk)])


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"default_engine_args": "[1, 2]"}, "default_engine_args", "Give an object of engine argument -> value."),
        ({"num_kv_heads": "64"}, "num_kv_heads", "KV heads cannot exceed attention heads."),
        ({"num_kv_heads": "5"}, "num_kv_heads", "Attention heads must be a multiple of KV heads."),
        ({"quality_score": "50"}, "quality_source", "Say where the quality score comes from."),
    ],
)
def test_the_admin_applies_the_catalog_rules_and_changes_nothing(client_for, root, model, changes, field, message):
    before = state()
    response = submit(client_for(root), change_url(model), **changes)
    assert response.status_code == 200
    assert message in response.context["adminform"].form.errors[field]
    assert message.replace(">", "&gt;") in response.content.decode()
    assert state() == before


@pytest.mark.parametrize("status", ["deprecated", "blocked"])
def test_status_actions_go_through_the_service(client_for, root, model, status):
    response = client_for(root).post(
        reverse("admin:catalog_catalogmodel_changelist"),
        {"action": f"mark_{status}", "_selected_action": [model.pk]},
    )
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.status == status
    event = AuditEvent.objects.get(action="catalog_model.status")
    assert (event.actor_id, event.after) == (root.pk, {"status": status})


def test_change_page_shows_engine_args_as_json(client_for, root):
    model = CatalogModelFactory(default_engine_args={"max_num_seqs": 64})
    data = page_data(client_for(root).get(change_url(model)))
    assert '"max_num_seqs": 64' in data["default_engine_args"]
