"""Catalog pages: everyone signed in browses, admins curate through the services; bad input changes nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.inventory.models import GpuType
from apps.inventory.tests.factories import GpuTypeFactory

ROLES = ("member_user", "lead_user", "finance_user", "admin_user")


def state() -> tuple:
    """Everything the catalog pages can change, to prove that refused input changed nothing."""
    return (
        list(CatalogModel.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
    )


def field_errors(response, field: str) -> list[str]:
    """Errors shown next to `field`: in the form, and rendered in the page right after that field's input."""
    errors = response.context["form"].errors.get(field, [])
    html = response.content.decode()
    for message in errors:
        escaped = message.replace("'", "&#x27;").replace('"', "&quot;").replace(">", "&gt;")
        field_at = html.index(f'name="{field}"')
        assert escaped in html[field_at : field_at + 3000], f"{message!r} is not shown next to {field}"
    return errors


def valid_post(**overrides) -> dict:
    data = {
        "name": "llama-3.1-8b-instruct",
        "source": "meta-llama/Llama-3.1-8B-Instruct",
        "family": "llama",
        "license": "llama3.1",
        "parameter_count": "8030261248",
        "context_length": "131072",
        "dtype": "bfloat16",
        "num_layers": "32",
        "hidden_size": "4096",
        "num_attention_heads": "32",
        "num_kv_heads": "8",
        "head_dim": "128",
        "quality_score": "68.40",
        "quality_source": "MMLU 5-shot, model card",
        "status": "approved",
        "recommended_gpu_type": "",
        "recommended_gpu_count": "1",
        "default_engine_args": '{"max_model_len": 8192}',
    }
    data.update(overrides)
    return data


def last_event() -> AuditEvent:
    event = AuditEvent.objects.order_by("-id").first()
    assert event is not None
    return event


# --- who may open what --------------------------------------------------------------------------
@pytest.fixture
def model(db) -> CatalogModel:
    return CatalogModelFactory(name="qwen-2.5-7b", family="qwen")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", ["catalog:list", "catalog:detail"])
def test_every_signed_in_role_browses_the_catalog(request, client_for, model, role, page):
    args = [model.pk] if page == "catalog:detail" else []
    response = client_for(request.getfixturevalue(role)).get(reverse(page, args=args))
    assert response.status_code == 200
    assert model.name in response.content.decode()


@pytest.mark.parametrize("page", ["catalog:list", "catalog:detail", "catalog:create", "catalog:edit", "catalog:delete"])
def test_anonymous_is_sent_to_sign_in(client_for, model, page):
    args = [] if page in ("catalog:list", "catalog:create") else [model.pk]
    response = client_for(None).get(reverse(page, args=args))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize(("role", "status"), [*((r, 403) for r in ROLES[:-1]), ("admin_user", 200)])
@pytest.mark.parametrize("page", ["catalog:create", "catalog:edit", "catalog:delete"])
def test_only_admins_open_the_curation_pages(request, client_for, model, role, status, page):
    args = [] if page == "catalog:create" else [model.pk]
    response = client_for(request.getfixturevalue(role)).get(reverse(page, args=args))
    assert response.status_code == status


@pytest.mark.parametrize("role", ROLES[:-1])
def test_non_admin_posts_change_nothing(request, client_for, model, role):
    client = client_for(request.getfixturevalue(role))
    before = state()
    posts = [
        (reverse("catalog:create"), valid_post()),
        (reverse("catalog:edit", args=[model.pk]), valid_post(name="renamed")),
        (reverse("catalog:set_status", args=[model.pk]), {"status": "blocked"}),
        (reverse("catalog:delete", args=[model.pk]), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403
    assert state() == before


def test_admin_actions_are_shown_only_to_admins(client_for, admin_user, member_user, model):
    for user, shown in ((admin_user, True), (member_user, False)):
        list_html = client_for(user).get(reverse("catalog:list")).content.decode()
        detail_html = client_for(user).get(reverse("catalog:detail", args=[model.pk])).content.decode()
        assert (reverse("catalog:create") in list_html) is shown
        assert (reverse("catalog:edit", args=[model.pk]) in detail_html) is shown
        assert (reverse("catalog:set_status", args=[model.pk]) in detail_html) is shown


# --- list ---------------------------------------------------------------------------------------
def test_list_filters_by_status_family_and_name(client_for, member_user):
    CatalogModelFactory(name="llama-3-8b", family="llama")
    CatalogModelFactory(name="llama-2-13b", family="llama", status=CatalogModel.Status.DEPRECATED)
    CatalogModelFactory(name="mistral-7b", family="mistral", status=CatalogModel.Status.BLOCKED)
    client = client_for(member_user)

    def names(**params) -> list[str]:
        response = client.get(reverse("catalog:list"), params)
        assert response.status_code == 200
        return [model.name for model, _ in response.context["rows"]]

    assert names() == ["llama-2-13b", "llama-3-8b", "mistral-7b"]
    assert names(status="deprecated") == ["llama-2-13b"]
    assert names(family="llama") == ["llama-2-13b", "llama-3-8b"]
    assert names(q="MISTRAL") == ["mistral-7b"]
    assert names(family="llama", status="approved") == ["llama-3-8b"]
    # A family nobody has is ignored instead of failing the page.
    assert names(family="no-such-family") == ["llama-2-13b", "llama-3-8b", "mistral-7b"]


def test_list_shows_status_size_and_recommended_gpus(client_for, member_user):
    h100 = GpuTypeFactory(sku="H100-80GB")
    CatalogModelFactory(
        name="big-model",
        parameter_count=70_600_000_000,
        recommended_gpu_type=h100,
        recommended_gpu_count=4,
        status=CatalogModel.Status.DEPRECATED,
    )
    html = client_for(member_user).get(reverse("catalog:list")).content.decode()
    assert "70.6B" in html
    assert "4 \N{MULTIPLICATION SIGN} H100-80GB" in html
    assert "Deprecated" in html


def test_list_empty_states(client_for, admin_user, member_user, db):
    member_html = client_for(member_user).get(reverse("catalog:list")).content.decode()
    assert "The catalog is empty." in member_html
    assert reverse("catalog:create") not in member_html
    admin_html = client_for(admin_user).get(reverse("catalog:list")).content.decode()
    assert "Add the first model" in admin_html
    CatalogModelFactory(name="only-one", family="llama")
    filtered = client_for(member_user).get(reverse("catalog:list"), {"q": "nothing-like-this"}).content.decode()
    assert "No model matches these filters." in filtered


def test_list_paginates_and_keeps_the_filters(client_for, member_user):
    for i in range(55):
        CatalogModelFactory(name=f"m-{i:03d}", family="llama")
    client = client_for(member_user)
    first = client.get(reverse("catalog:list"), {"family": "llama"})
    assert len(first.context["rows"]) == 50
    assert "family=llama&amp;page=2" in first.content.decode()
    second = client.get(reverse("catalog:list"), {"family": "llama", "page": 2})
    assert [m.name for m, _ in second.context["rows"]] == [f"m-{i:03d}" for i in range(50, 55)]


def _list_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_query_count_does_not_grow_with_rows(client_for, member_user, django_assert_max_num_queries):
    client = client_for(member_user)
    url = reverse("catalog:list")

    def add(n: int) -> None:
        for _ in range(n):
            CatalogModelFactory(recommended_gpu_type=GpuTypeFactory(), family=f"f{CatalogModel.objects.count()}")

    add(3)
    with django_assert_max_num_queries(9):
        assert client.get(url).status_code == 200
    with_three = _list_queries(client, url)
    add(7)
    with django_assert_max_num_queries(9):
        assert client.get(url).status_code == 200
    assert _list_queries(client, url) == with_three


# --- detail -------------------------------------------------------------------------------------
def test_detail_shows_architecture_quality_gpus_engine_args_and_kv_sizing(client_for, member_user):
    gpu = GpuTypeFactory(sku="L40S-48GB")
    model = CatalogModelFactory(
        name="llama-3-8b",
        num_layers=32,
        num_kv_heads=8,
        num_attention_heads=32,
        head_dim=128,
        hidden_size=4096,
        dtype="bfloat16",
        context_length=8192,
        quality_score=Decimal("66.60"),
        quality_source="MMLU 5-shot",
        recommended_gpu_type=gpu,
        recommended_gpu_count=2,
        default_engine_args={"max_model_len": 8192, "enable_prefix_caching": True},
    )
    response = client_for(member_user).get(reverse("catalog:detail", args=[model.pk]))
    html = response.content.decode()
    assert response.context["kv_cache"].bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert "128 KiB" in html  # per token
    assert "1 GiB" in html  # the whole 8192-token context
    assert "66.60" in html and "MMLU 5-shot" in html
    assert "2 \N{MULTIPLICATION SIGN} " in html and "L40S-48GB" in html
    assert "&quot;enable_prefix_caching&quot;: true" in html
    assert "&quot;max_model_len&quot;: 8192" in html


def test_detail_says_when_a_dtype_cannot_be_sized(client_for, member_user):
    model = CatalogModelFactory(dtype="exotic9")
    html = client_for(member_user).get(reverse("catalog:detail", args=[model.pk])).content.decode()
    assert "Cannot size the KV cache" in html
    assert "No quality score recorded." in html
    assert "No recommendation" in html


def test_detail_of_unknown_model_is_404(client_for, member_user, db):
    assert client_for(member_user).get(reverse("catalog:detail", args=[999999])).status_code == 404


# --- create and edit ----------------------------------------------------------------------------
def test_admin_adds_a_model_and_the_change_is_audited(client_for, admin_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    response = client_for(admin_user).post(reverse("catalog:create"), valid_post(recommended_gpu_type=str(gpu.pk)))
    model = CatalogModel.objects.get(name="llama-3.1-8b-instruct")
    assert response.status_code == 302
    assert response["Location"] == reverse("catalog:detail", args=[model.pk])
    assert model.default_engine_args == {"max_model_len": 8192}
    assert model.recommended_gpu_type == gpu
    assert model.quality_score == Decimal("68.40")
    event = last_event()
    assert (event.action, event.actor_id, event.target_id) == ("catalog_model.create", admin_user.pk, str(model.pk))
    assert event.after["name"] == "llama-3.1-8b-instruct"
    assert event.after["recommended_gpu_type_id"] == gpu.pk


def test_an_empty_engine_args_box_means_no_arguments(client_for, admin_user, db):
    client_for(admin_user).post(reverse("catalog:create"), valid_post(default_engine_args=""))
    assert CatalogModel.objects.get().default_engine_args == {}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"num_kv_heads": "64"}, "num_kv_heads", "KV heads cannot exceed attention heads."),
        ({"num_kv_heads": "5"}, "num_kv_heads", "Attention heads must be a multiple of KV heads."),
        ({"default_engine_args": "[1, 2]"}, "default_engine_args", "Give an object of engine argument -> value."),
        ({"default_engine_args": '"--max-model-len 8192"'}, "default_engine_args", "Give an object"),
        ({"default_engine_args": "{max_model_len: 1"}, "default_engine_args", "Enter a valid JSON."),
        ({"recommended_gpu_type": "999999"}, "recommended_gpu_type", "Choose one of the GPU types in the list."),
        ({"quality_source": ""}, "quality_source", "Say where the quality score comes from."),
        ({"quality_score": "101"}, "quality_score", "less than or equal to 100"),
        ({"num_layers": "0"}, "num_layers", "greater than or equal to 1"),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_bad_input_is_shown_next_to_the_field_and_adds_nothing(client_for, admin_user, overrides, field, message):
    client = client_for(admin_user)
    before = state()
    response = client.post(reverse("catalog:create"), valid_post(**overrides))
    assert response.status_code == 200
    assert any(message in error for error in field_errors(response, field))
    assert state() == before


def test_duplicate_name_is_refused(client_for, admin_user, model):
    before = state()
    response = client_for(admin_user).post(reverse("catalog:create"), valid_post(name=model.name))
    assert "already exists" in field_errors(response, "name")[0]
    assert state() == before


def test_admin_edits_a_model_and_only_the_change_is_audited(client_for, admin_user, model):
    data = valid_post(name=model.name, source=model.source, family=model.family, quality_score="70.00")
    data.pop("status")
    response = client_for(admin_user).post(reverse("catalog:edit", args=[model.pk]), data)
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.quality_score == Decimal("70.00")
    assert model.num_layers == 32
    event = last_event()
    assert event.action == "catalog_model.update"
    assert event.before["quality_score"] is None
    assert event.after["quality_score"] == "70.00"
    assert "name" not in event.after  # unchanged fields are not in the event


def test_edit_form_shows_current_engine_args_as_json(client_for, admin_user):
    model = CatalogModelFactory(default_engine_args={"tensor_parallel_size": 2})
    response = client_for(admin_user).get(reverse("catalog:edit", args=[model.pk]))
    assert json.loads(response.context["form"]["default_engine_args"].value()) == {"tensor_parallel_size": 2}
    assert "status" not in response.context["form"].fields  # status has its own action


def test_bad_edit_changes_nothing(client_for, admin_user, model):
    before = state()
    data = valid_post(name=model.name, num_attention_heads="8", num_kv_heads="16")
    response = client_for(admin_user).post(reverse("catalog:edit", args=[model.pk]), data)
    assert field_errors(response, "num_kv_heads") == ["KV heads cannot exceed attention heads."]
    assert state() == before


# --- status and delete --------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["deprecated", "blocked", "approved"])
def test_admin_changes_the_status(client_for, admin_user, status):
    model = CatalogModelFactory(status=CatalogModel.Status.DEPRECATED if status == "approved" else "approved")
    response = client_for(admin_user).post(reverse("catalog:set_status", args=[model.pk]), {"status": status})
    assert response.status_code == 302
    model.refresh_from_db()
    assert model.status == status
    event = last_event()
    assert (event.action, event.after) == ("catalog_model.status", {"status": status})


def test_unknown_status_changes_nothing(client_for, admin_user, model):
    before = state()
    response = client_for(admin_user).post(
        reverse("catalog:set_status", args=[model.pk]), {"status": "retired"}, follow=True
    )
    assert "Choose approved, deprecated or blocked." in response.content.decode()
    assert state() == before


def test_status_change_is_post_only(client_for, admin_user, model):
    assert client_for(admin_user).get(reverse("catalog:set_status", args=[model.pk])).status_code == 405


def test_delete_asks_first_then_deletes_on_post(client_for, admin_user, model):
    client = client_for(admin_user)
    before = state()
    confirm = client.get(reverse("catalog:delete", args=[model.pk]))
    assert confirm.status_code == 200
    assert f"Delete {model.name}" in confirm.content.decode()
    assert state() == before  # asking deletes nothing
    response = client.post(reverse("catalog:delete", args=[model.pk]))
    assert response.status_code == 302
    assert not CatalogModel.objects.filter(pk=model.pk).exists()
    event = last_event()
    assert (event.action, event.target_id, event.before["name"]) == ("catalog_model.delete", str(model.pk), model.name)


def test_gpu_type_recommended_by_a_model_survives_in_the_catalog(client_for, admin_user):
    """The catalog's own reference: a GPU type a model recommends cannot be deleted from under it."""
    gpu = GpuTypeFactory(sku="A100-80GB")
    CatalogModelFactory(recommended_gpu_type=gpu)
    response = client_for(admin_user).post(reverse("inventory:gpu_type_delete", args=[gpu.pk]))
    assert response.status_code == 409
    assert "catalog models" in response.content.decode()
    assert GpuType.objects.filter(pk=gpu.pk).exists()


def test_a_new_model_form_starts_with_empty_engine_args(client_for, admin_user, db):
    response = client_for(admin_user).get(reverse("catalog:create"))
    assert json.loads(response.context["form"]["default_engine_args"].value()) == {}
