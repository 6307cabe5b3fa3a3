"""The shared create/update/delete helpers: validation before saving, audit of real changes only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_changes, snapshot
from apps.core.services import model_create, model_delete, model_update, whole_number
from apps.inventory.models import GpuType
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams.models import Budget, GpuQuota, Team
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, TeamFactory

ACTOR = Actor(user=None, source_ip="192.0.2.55")


def test_model_create_validates_before_saving_and_audits(db):
    with pytest.raises(ValidationError) as info:
        model_create(Team, actor=ACTOR, action="team.create", data={"slug": "Bad_Slug", "name": ""})
    assert set(info.value.message_dict) == {"slug", "name"}
    assert (Team.objects.count(), AuditEvent.objects.count()) == (0, 0)

    team = model_create(Team, actor=ACTOR, action="team.create", data={"slug": "ok", "name": "OK"})
    event = AuditEvent.objects.get()
    assert (event.action, event.actor_label, event.source_ip, event.target_id) == (
        "team.create",
        "system",
        "192.0.2.55",
        str(team.pk),
    )


def test_model_update_of_a_row_deleted_meanwhile_is_a_validation_error(db):
    team = TeamFactory()
    Team.objects.filter(pk=team.pk).delete()
    with pytest.raises(ValidationError, match="no longer exists"):
        model_update(team, actor=ACTOR, action="team.update", data={"name": "X"}, allowed=["name"])
    assert not AuditEvent.objects.exists()


def test_model_update_refuses_fields_outside_the_allowed_ones(db):
    team = TeamFactory(slug="keep")
    with pytest.raises(ValidationError) as info:
        model_update(team, actor=ACTOR, action="team.update", data={"slug": "x", "name": "Y"}, allowed=["name"])
    assert set(info.value.message_dict) == {"slug"}
    assert Team.objects.get(pk=team.pk).name == team.name


def test_model_update_compares_values_as_stored(db):
    budget = BudgetFactory(monthly_amount=Decimal("100.00"))
    model_update(
        budget, actor=ACTOR, action="budget.update", data={"monthly_amount": "100"}, allowed=["monthly_amount"]
    )
    assert not AuditEvent.objects.exists()

    model_update(
        budget, actor=ACTOR, action="budget.update", data={"monthly_amount": "100.5"}, allowed=["monthly_amount"]
    )
    event = AuditEvent.objects.get()
    assert (event.before, event.after) == ({"monthly_amount": "100.00"}, {"monthly_amount": "100.50"})
    assert Budget.objects.get(pk=budget.pk).monthly_amount == Decimal("100.50")


def test_model_delete_of_a_protected_row_is_a_validation_error_and_writes_nothing(db):
    quota = GpuQuotaFactory(gpu_type=GpuTypeFactory(sku="H100-80GB"))
    with pytest.raises(ValidationError, match="H100-80GB is still used by: gpu quotas"):
        model_delete(quota.gpu_type, actor=ACTOR, action="gpu_type.delete")
    assert GpuType.objects.filter(pk=quota.gpu_type_id).exists()
    assert GpuQuota.objects.count() == 1
    assert not AuditEvent.objects.exists()


def test_snapshot_holds_decimals_with_the_column_scale(db):
    budget = BudgetFactory(monthly_amount=Decimal("7"))
    assert snapshot(budget)["monthly_amount"] == "7.00"
    assert snapshot(budget, ["monthly_amount", "currency"]) == {"monthly_amount": "7.00", "currency": "USD"}


def test_audit_changes_keeps_only_changed_keys():
    assert audit_changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == ({"b": 2}, {"b": 3})
    assert audit_changes({"a": 1}, {"a": 1}) == ({}, {})


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (7, 7), ("12", 12), (" 3 ", 3)])
def test_whole_number_accepts_counts(value, expected):
    assert whole_number(value, field="count", message="m") == expected


@pytest.mark.parametrize("value", [-1, "-1", 1.0, "1.5", "", "ten", None, True, Decimal("2")])
def test_whole_number_refuses_anything_else_on_the_field(value):
    with pytest.raises(ValidationError) as info:
        whole_number(value, field="count", message="Give a count.")
    assert info.value.message_dict == {"count": ["Give a count."]}
