from __future__ import annotations

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.inventory.tests.factories import GpuTypeFactory

pytestmark = pytest.mark.django_db


LIST = reverse("api:catalog-models-list")
SIGNED_IN = ["member_user", "lead_user", "other_lead", "finance_user", "admin_user"]


def detail(model: CatalogModel) -> str:
    return reverse("api:catalog-models-detail", args=[model.pk])


def payload(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "llama-3-8b",
        "source": "meta-llama/Meta-Llama-3-8B-Instruct",
        "parameter_count": 8_000_000_000,
        "context_length": 8192,
        "num_layers": 32,
        "hidden_size": 4096,
        "num_attention_heads": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
    }
    data.update(overrides)
    return data


def test_anonymous_gets_401(client_for):
    assert client_for(None).get(LIST).status_code == 401


@pytest.mark.parametrize("role", SIGNED_IN)
def test_every_signed_in_role_reads_the_catalog(request, client_for, role):
    model = CatalogModelFactory(name="visible-model")
    client = client_for(request.getfixturevalue(role))
    listed = client.get(LIST)
    assert listed.status_code == 200
    assert [row["name"] for row in listed.json()["results"]] == ["visible-model"]
    assert client.get(detail(model)).json()["name"] == "visible-model"


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_non_admins_cannot_write(request, client_for, role):
    model = CatalogModelFactory(name="keep-me")
    client = client_for(request.getfixturevalue(role))
    assert client.post(LIST, payload(), content_type="application/json").status_code == 403
    assert client.patch(detail(model), {"status": "blocked"}, content_type="application/json").status_code == 403
    assert client.delete(detail(model)).status_code == 403
    model.refresh_from_db()
    assert model.status == CatalogModel.Status.APPROVED
    assert list(CatalogModel.objects.values_list("name", flat=True)) == ["keep-me"]


def test_admin_creates_a_model_with_an_audit_event(client_for, admin_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    response = client_for(admin_user).post(
        LIST, payload(recommended_gpu_type="H100-80GB"), content_type="application/json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["recommended_gpu_type"] == "H100-80GB"
    created = CatalogModel.objects.get(pk=body["id"])
    assert created.recommended_gpu_type == gpu
    event = AuditEvent.objects.get(action="catalog_model.create")
    assert event.actor == admin_user and event.target_id == str(created.pk)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"parameter_count": -5}, "parameter_count"),
        ({"num_kv_heads": 5}, "num_kv_heads"),  # 32 heads are no multiple of 5 KV heads: the service's rule
        ({"recommended_gpu_type": "NO-SUCH-GPU"}, "recommended_gpu_type"),
        ({"status": "shiny"}, "status"),
        ({"quality_score": "80.00"}, "quality_source"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(client_for, admin_user, overrides, field):
    response = client_for(admin_user).post(LIST, payload(**overrides), content_type="application/json")
    assert response.status_code == 400
    assert field in response.json()
    assert not CatalogModel.objects.exists()
    assert not AuditEvent.objects.exists()


def test_admin_updates_and_deletes_with_audit(client_for, admin_user):
    model = CatalogModelFactory(name="old-model")
    client = client_for(admin_user)
    response = client.patch(detail(model), {"status": "deprecated"}, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["status"] == "deprecated"
    event = AuditEvent.objects.get(action="catalog_model.update")
    assert event.before == {"status": "approved"} and event.after == {"status": "deprecated"}

    assert client.delete(detail(model)).status_code == 204
    assert not CatalogModel.objects.exists()
    assert AuditEvent.objects.filter(action="catalog_model.delete", target_id=str(model.pk)).exists()


def test_bad_update_changes_nothing(client_for, admin_user):
    model = CatalogModelFactory(name="steady")
    response = client_for(admin_user).patch(detail(model), {"num_kv_heads": 64}, content_type="application/json")
    assert response.status_code == 400
    assert "num_kv_heads" in response.json() or "non_field_errors" in response.json()
    model.refresh_from_db()
    assert model.num_kv_heads == 8
    assert not AuditEvent.objects.exists()


def test_filter_by_status(client_for, member_user):
    CatalogModelFactory(name="a-approved")
    CatalogModelFactory(name="b-blocked", status=CatalogModel.Status.BLOCKED)
    client = client_for(member_user)
    blocked = client.get(LIST, {"status": "blocked"}).json()["results"]
    assert [row["name"] for row in blocked] == ["b-blocked"]
    bad = client.get(LIST, {"status": "nonsense"})
    assert bad.status_code == 400 and "status" in bad.json()


def test_list_query_count_is_constant(client_for, member_user, django_assert_max_num_queries):
    gpus = GpuTypeFactory.create_batch(3)
    for i in range(12):
        CatalogModelFactory(recommended_gpu_type=gpus[i % 3])
    client = client_for(member_user)
    # session, user, memberships (roles), count, page, session save (3): the same for any number of rows
    with django_assert_max_num_queries(8):
        response = client.get(LIST)
    assert response.json()["count"] == 12
