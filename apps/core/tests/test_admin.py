"""The Django admin as a whole: every model has a page, only platform admins get in, the audit mixin records."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from apps.accounts.models import ApiToken
from apps.accounts.services import api_token_create
from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.core.admin import AuditedModelAdmin, ReadOnlyAdminMixin, audit_prefix_of
from apps.core.tests.adminform import superuser
from apps.inventory.models import ClusterGpuInventory, GpuPrice
from apps.inventory.tests.factories import ClusterGpuInventoryFactory, GpuPriceFactory
from apps.teams.models import Membership
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory, MembershipFactory

EXPECTED_MODELS = {
    "accounts.user",
    "accounts.apitoken",
    "teams.team",
    "teams.membership",
    "teams.gpuquota",
    "teams.budget",
    "inventory.gputype",
    "inventory.gpuprice",
    "inventory.cluster",
    "catalog.catalogmodel",
    "audit.auditevent",
    "auth.group",
}
# History and secrets-derived rows are never added through the admin.
NO_ADD = {"accounts.apitoken", "inventory.gpuprice", "audit.auditevent"}


@pytest.fixture
def one_of_each(db):
    membership = MembershipFactory()
    GpuQuotaFactory(team=membership.team)
    BudgetFactory(team=membership.team)
    GpuPriceFactory()
    ClusterGpuInventoryFactory()
    CatalogModelFactory()
    api_token_create(actor=Actor.system(), user=membership.user, name="ci")
    Group.objects.create(name="operators")
    assert AuditEvent.objects.exists()


def test_every_model_has_an_admin():
    registered = {model._meta.label_lower for model in admin.site._registry}
    assert registered >= EXPECTED_MODELS


@pytest.mark.parametrize("label", sorted(EXPECTED_MODELS))
def test_every_admin_page_renders_for_a_superuser(client_for, one_of_each, label):
    client = client_for(superuser())
    app_label, model_name = label.split(".")
    model = next(m for m in admin.site._registry if m._meta.label_lower == label)
    obj = model._default_manager.order_by("pk").first()
    assert client.get(reverse(f"admin:{app_label}_{model_name}_changelist")).status_code == 200
    assert client.get(reverse(f"admin:{app_label}_{model_name}_change", args=[obj.pk])).status_code == 200
    add = client.get(reverse(f"admin:{app_label}_{model_name}_add"))
    assert add.status_code == (403 if label in NO_ADD else 200)


def test_staff_with_model_permissions_but_no_platform_admin_role_is_refused(client_for, one_of_each):
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="catalog"))
    client = client_for(staff)
    assert client.get(reverse("admin:catalog_catalogmodel_changelist")).status_code == 403
    assert "Catalog" not in client.get(reverse("admin:index")).content.decode()


def test_staff_platform_admin_with_model_permissions_gets_in(client_for, one_of_each):
    staff = UserFactory(username="staff-admin", is_staff=True, is_platform_admin=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="catalog"))
    client = client_for(staff)
    assert client.get(reverse("admin:catalog_catalogmodel_changelist")).status_code == 200
    # Django's own permissions still apply: no team permissions, no team pages.
    assert client.get(reverse("admin:teams_team_changelist")).status_code == 403


def test_platform_admin_who_is_not_staff_is_sent_to_the_admin_sign_in(client_for, admin_user):
    response = client_for(admin_user).get(reverse("admin:index"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


def test_every_writable_admin_records_audit_events():
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        if label in ("audit.auditevent", "inventory.gpuprice"):
            continue
        if isinstance(model_admin, ReadOnlyAdminMixin):
            continue  # nothing can be written through it, so there is nothing to audit
        assert isinstance(model_admin, AuditedModelAdmin), label


def test_read_only_admins_refuse_every_write(rf, db):
    request = rf.get("/")
    request.user = superuser()
    read_only = [a for a in admin.site._registry.values() if isinstance(a, ReadOnlyAdminMixin)]
    assert read_only
    for model_admin in read_only:
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)


@pytest.mark.parametrize(
    ("model", "prefix"),
    [
        (CatalogModel, "catalog_model"),
        (ClusterGpuInventory, "cluster_gpu_inventory"),
        (GpuPrice, "gpu_price"),
        (Membership, "membership"),
        (ApiToken, "api_token"),
    ],
)
def test_audit_prefix_follows_the_services_naming(model, prefix):
    assert audit_prefix_of(model) == prefix
