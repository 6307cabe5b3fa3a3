"""`manage.py seed_demo`: idempotent demo data written through the services, with working demo logins."""

from __future__ import annotations

import io
import json
import stat
from decimal import Decimal

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from apps.accounts.models import User
from apps.accounts.permissions import access_for
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.core.management.commands import seed_demo
from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice, GpuType
from apps.teams.models import Budget, GpuQuota, Membership, Team
from apps.teams.services import quota_set

pytestmark = pytest.mark.django_db

MODELS = (
    Team,
    User,
    Membership,
    GpuType,
    GpuPrice,
    CatalogModel,
    GpuQuota,
    Budget,
    Cluster,
    ClusterGpuInventory,
    AuditEvent,
)


def counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in MODELS}


def run_seed(logins_file) -> str:
    out = io.StringIO()
    call_command("seed_demo", logins_file=logins_file, stdout=out)
    return out.getvalue()


def test_running_twice_creates_the_rows_once(tmp_path):
    logins = tmp_path / "logins.json"
    first_output = run_seed(logins)
    after_first = counts()
    second_output = run_seed(logins)

    assert counts() == after_first
    assert "rows created" in first_output
    assert "already present" in second_output
    assert after_first["teams.Team"] == len(seed_demo.TEAMS) == 3
    assert after_first["accounts.User"] == len(seed_demo.USERS)
    assert after_first["inventory.GpuType"] == after_first["inventory.GpuPrice"] == len(seed_demo.GPU_TYPES)
    assert after_first["catalog.CatalogModel"] == len(seed_demo.CATALOG)
    assert after_first["teams.GpuQuota"] == len(seed_demo.QUOTAS)
    assert after_first["teams.Budget"] == len(seed_demo.BUDGETS)
    assert after_first["inventory.Cluster"] == 1


def test_every_row_created_leaves_a_system_audit_event(tmp_path):
    run_seed(tmp_path / "logins.json")
    created = sum(count for label, count in counts().items() if label != "audit.AuditEvent")

    events = AuditEvent.objects.all()
    assert events.count() == created
    assert set(events.values_list("actor_label", flat=True)) == {"system"}
    assert not events.filter(actor__isnull=False).exists()
    actions = set(events.values_list("action", flat=True))
    assert {
        "team.create",
        "user.create",
        "membership.add",
        "gpu_type.create",
        "gpu_price.add",
        "catalog_model.create",
        "quota.create",
        "budget.create",
        "cluster.create",
    } <= actions


def test_one_user_per_role(tmp_path):
    run_seed(tmp_path / "logins.json")
    research, product = Team.objects.get(slug="research"), Team.objects.get(slug="product")

    admin = access_for(User.objects.get(username="admin"))
    finance = access_for(User.objects.get(username="finance"))
    lead = access_for(User.objects.get(username="research-lead"))
    member = access_for(User.objects.get(username="research-member"))
    other_lead = access_for(User.objects.get(username="product-lead"))

    assert admin.is_admin and not admin.is_finance
    assert finance.is_finance and not finance.is_admin
    assert lead.lead_team_ids == {research.pk} and not (lead.is_admin or lead.is_finance)
    assert member.member_team_ids == {research.pk} and not member.lead_team_ids
    assert other_lead.lead_team_ids == {product.pk}
    assert all(team.cost_center for team in Team.objects.all())


def test_printed_passwords_log_in_and_stay_the_same(tmp_path):
    logins_file = tmp_path / "logins.json"
    first_output = run_seed(logins_file)
    second_output = run_seed(logins_file)
    logins = json.loads(logins_file.read_text())

    assert stat.S_IMODE(logins_file.stat().st_mode) == 0o600
    assert [entry["username"] for entry in logins] == [user.username for user in seed_demo.USERS]
    for entry in logins:
        assert entry["password"] in first_output
        assert entry["password"] in second_output
        assert authenticate(username=entry["username"], password=entry["password"]) is not None
    assert len({entry["password"] for entry in logins}) == len(logins)


def test_a_user_made_without_the_logins_file_keeps_its_password(tmp_path):
    run_seed(tmp_path / "first.json")
    first = {e["username"]: e["password"] for e in json.loads((tmp_path / "first.json").read_text())}

    output = run_seed(tmp_path / "other.json")

    assert "not known" in output
    assert authenticate(username="admin", password=first["admin"]) is not None


def test_prices_are_marked_as_examples(tmp_path):
    run_seed(tmp_path / "logins.json")

    prices = GpuPrice.objects.select_related("gpu_type")
    assert {price.gpu_type.sku for price in prices} >= {"H100-80GB", "A100-80GB", "L4"}
    assert all(price.is_example and price.note == "example price" for price in prices)
    assert all(price.hourly_price > Decimal("0") for price in prices)


def test_catalog_models_have_their_published_architecture(tmp_path):
    run_seed(tmp_path / "logins.json")

    llama = CatalogModel.objects.get(name="Llama-3.1-8B-Instruct")
    assert (llama.num_layers, llama.hidden_size, llama.num_attention_heads, llama.num_kv_heads) == (32, 4096, 32, 8)
    assert llama.head_dim * llama.num_attention_heads == llama.hidden_size
    qwen = CatalogModel.objects.get(name="Qwen2.5-7B-Instruct")
    assert (qwen.num_layers, qwen.hidden_size, qwen.num_kv_heads) == (28, 3584, 4)
    assert qwen.quality_score is None  # no invented quality numbers


def test_reseeding_keeps_changes_made_since(tmp_path):
    run_seed(tmp_path / "logins.json")
    research = Team.objects.get(slug="research")
    h100 = GpuType.objects.get(sku="H100-80GB")
    quota_set(actor=Actor.system(), team=research, gpu_type=h100, limit=2)
    Cluster.objects.get(name="local-ray").delete()

    run_seed(tmp_path / "logins.json")

    assert GpuQuota.objects.get(team=research, gpu_type=h100).limit == 2
    assert Cluster.objects.filter(name="local-ray").exists()  # missing demo rows come back
    cluster = Cluster.objects.get(name="local-ray")
    assert cluster.runtime == Cluster.Runtime.RAY and cluster.ray_dashboard_url == "http://127.0.0.1:8265"
