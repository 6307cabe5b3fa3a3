"""What every Django admin page shares: only platform admins, and every change written to the audit log.

The portal's services write AuditEvents; the Django admin saves models directly, so `AuditedModelAdmin` records
the same kind of event (with before/after snapshots and the request's actor) from the admin's save and delete
hooks, inside the transaction the admin already opens for each change.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.db import models, transaction
from django.forms import BaseModelForm
from django.forms.models import BaseInlineFormSet, BaseModelFormSet
from django.http import HttpRequest

from apps.accounts.permissions import access_for
from apps.audit.services import audit_changes, audit_record, snapshot
from apps.core.api import actor_from

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.teams.models import Team


def audit_prefix_of(model: type[models.Model]) -> str:
    """`CatalogModel` -> `catalog_model`, the prefix the services use for their actions."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", model._meta.object_name or model.__name__).lower()


class PlatformAdminOnly:
    """Django's own permissions AND the platform admin role (`access_for`), so staff flags alone are not enough."""

    def _is_platform_admin(self, request: HttpRequest) -> bool:
        return access_for(request.user).can_administer()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._is_platform_admin(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._is_platform_admin(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._is_platform_admin(request) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._is_platform_admin(request) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._is_platform_admin(request) and super().has_delete_permission(request, obj)  # type: ignore[misc]


class ReadOnlyAdminMixin:
    """Rows that are history (audit events, prices in force): visible, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AuditedModelAdmin(PlatformAdminOnly, admin.ModelAdmin):
    """A ModelAdmin whose saves and deletes (its own and its inlines') each write an AuditEvent.

    Actions are `<prefix>.admin_create|admin_update|admin_delete`, so the audit log tells admin-site changes
    from the portal's. `audit_exclude` keeps fields such as password hashes out of the snapshots.
    """

    audit_prefix: str | None = None
    audit_exclude: tuple[str, ...] = ()

    # --- hooks subclasses may override ----------------------------------------------------------
    def audit_team(self, obj: models.Model) -> Team | None:
        """The team an event is scoped to, so that the team's leads see it in their audit log."""
        if obj._meta.label_lower == "teams.team":
            return obj  # type: ignore[return-value]
        if getattr(obj, "team_id", None) is not None:
            return obj.team  # type: ignore[attr-defined,no-any-return]
        return None

    # --- recording ------------------------------------------------------------------------------
    def _prefix(self, model: type[models.Model]) -> str:
        if model is self.model and self.audit_prefix:
            return self.audit_prefix
        return audit_prefix_of(model)

    def _snapshot(self, obj: models.Model) -> dict[str, Any]:
        names = [f.attname for f in obj._meta.concrete_fields if f.name not in self.audit_exclude]
        return snapshot(obj, names)

    def _m2m_snapshot(self, obj: models.Model) -> dict[str, Any]:
        return {
            f.name: sorted(getattr(obj, f.name).values_list("pk", flat=True)) if obj.pk is not None else []
            for f in obj._meta.many_to_many
            if f.name not in self.audit_exclude
        }

    def _stored_snapshot(self, obj: models.Model) -> dict[str, Any] | None:
        # The admin form has already copied its input onto `obj`, so "before" comes from the database.
        stored = type(obj)._default_manager.filter(pk=obj.pk).first()
        return self._snapshot(stored) if stored is not None else None

    def _record_create(self, request: HttpRequest, obj: models.Model) -> None:
        audit_record(
            actor=actor_from(request),
            action=f"{self._prefix(type(obj))}.admin_create",
            target=obj,
            team=self.audit_team(obj),
            after=self._snapshot(obj),
        )

    def _record_update(
        self, request: HttpRequest, obj: models.Model, before: dict[str, Any] | None, after: dict[str, Any]
    ) -> None:
        """Only what changed. Callers take `after` before saving, so auto_now timestamps are no change."""
        old, new = audit_changes(before or {}, after)
        if not new:
            return  # saved without a change: nothing to record
        audit_record(
            actor=actor_from(request),
            action=f"{self._prefix(type(obj))}.admin_update",
            target=obj,
            team=self.audit_team(obj),
            before=old,
            after=new,
        )

    def _record_delete(self, request: HttpRequest, obj: models.Model) -> None:
        # Written before the delete, while the target still has its primary key.
        audit_record(
            actor=actor_from(request),
            action=f"{self._prefix(type(obj))}.admin_delete",
            target=obj,
            team=self.audit_team(obj),
            before=self._snapshot(obj),
            target_label=str(obj),
        )

    # --- ModelAdmin hooks -----------------------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: Any, form: BaseModelForm, change: bool) -> None:
        with transaction.atomic():
            # Many-to-many fields (a user's groups and permissions) are saved later, in save_related.
            obj._audit_m2m_before = self._m2m_snapshot(obj)
            if not change:
                super().save_model(request, obj, form, change)
                self._record_create(request, obj)
                return
            before, after = self._stored_snapshot(obj), self._snapshot(obj)
            super().save_model(request, obj, form, change)
            self._record_update(request, obj, before, after)

    def save_related(self, request: HttpRequest, form: BaseModelForm, formsets: Any, change: bool) -> None:
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            obj = form.instance
            before = getattr(obj, "_audit_m2m_before", None)
            if before is None:
                return
            self._record_update(request, obj, before, self._m2m_snapshot(obj))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            self._record_delete(request, obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        # The bulk "delete selected" action: one event per row, all or nothing.
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)

    def save_formset(
        self, request: HttpRequest, form: BaseModelForm, formset: BaseModelFormSet | BaseInlineFormSet, change: bool
    ) -> None:
        with transaction.atomic():
            formset.save(commit=False)
            for obj in formset.deleted_objects:
                self._record_delete(request, obj)
                obj.delete()
            for obj, _changed in formset.changed_objects:
                before, after = self._stored_snapshot(obj), self._snapshot(obj)
                obj.save()
                self._record_update(request, obj, before, after)
            for obj in formset.new_objects:
                obj.save()
                self._record_create(request, obj)
            formset.save_m2m()
