from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import AuditedModelAdmin
from apps.core.api import actor_from
from apps.core.forms import add_service_errors

from .forms import CatalogModelForm
from .models import CatalogModel
from .services import _check, catalog_model_set_status


class CatalogModelAdminForm(CatalogModelForm):
    """The portal's catalog rules (engine args an object, score with a source, heads vs KV heads) apply here too."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()  # CatalogModelForm.clean returns the cleaned data
        try:
            _check(data)
        except ValidationError as exc:
            add_service_errors(self, exc)
        return data


def _set_status(
    modeladmin: CatalogModelAdmin, request: HttpRequest, queryset: QuerySet[CatalogModel], status: str
) -> None:
    actor = actor_from(request)
    for model in queryset:
        catalog_model_set_status(actor=actor, model=model, status=status)
    label = CatalogModel.Status(status).label.lower()
    modeladmin.message_user(request, f"{queryset.count()} model(s) are now {label}.", messages.SUCCESS)


@admin.register(CatalogModel)
class CatalogModelAdmin(AuditedModelAdmin):
    form = CatalogModelAdminForm
    list_display = ("name", "family", "parameter_count", "dtype", "status", "quality_score", "recommended_gpu_type")
    list_filter = ("status", "family")
    list_select_related = ("recommended_gpu_type",)
    search_fields = ("name", "source", "family")
    actions = ("mark_approved", "mark_deprecated", "mark_blocked")

    @admin.action(description="Mark selected models approved", permissions=["change"])
    def mark_approved(self, request: HttpRequest, queryset: QuerySet[CatalogModel]) -> None:
        _set_status(self, request, queryset, CatalogModel.Status.APPROVED)

    @admin.action(description="Mark selected models deprecated", permissions=["change"])
    def mark_deprecated(self, request: HttpRequest, queryset: QuerySet[CatalogModel]) -> None:
        _set_status(self, request, queryset, CatalogModel.Status.DEPRECATED)

    @admin.action(description="Mark selected models blocked", permissions=["change"])
    def mark_blocked(self, request: HttpRequest, queryset: QuerySet[CatalogModel]) -> None:
        _set_status(self, request, queryset, CatalogModel.Status.BLOCKED)
