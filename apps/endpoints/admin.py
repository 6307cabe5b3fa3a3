"""Endpoints, operations and quota requests in the Django admin: for looking, not for changing state.

Requests, approvals, scaling and deletion must go through `endpoints.services` (quota checks, the team lock, the
cluster operation, the audit event), so rows are never added or deleted here and their state is read-only. The
one thing an admin may change is an endpoint's rollout deadline (audited like every admin change).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.core.admin import AuditedModelAdmin

from .models import Endpoint, Operation, QuotaRequest


class NoAddOrDelete:
    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _all_fields_but(model: Any, *editable: str) -> tuple[str, ...]:
    return tuple(f.name for f in model._meta.concrete_fields if f.name not in editable)


class OperationInline(admin.TabularInline):
    model = Operation
    fields = ("kind", "state", "attempts", "created_at", "started_at", "finished_at", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ("-created_at", "-id")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Endpoint)
class EndpointAdmin(NoAddOrDelete, AuditedModelAdmin):
    list_display = ("name", "team", "state", "model", "cluster", "gpu_type", "reserved_gpus", "created_at")
    list_filter = ("state", "cluster", "gpu_type")
    list_select_related = ("team", "model", "cluster", "gpu_type")
    search_fields = ("name", "team__slug", "model__name")
    readonly_fields = (*_all_fields_but(Endpoint, "id", "deadline_at"), "reserved_gpus", "served_model_id")
    fields = (*readonly_fields, "deadline_at")
    inlines = (OperationInline,)

    @admin.display(description="GPUs reserved")
    def reserved_gpus(self, obj: Endpoint) -> int:
        return obj.reserved_gpus

    @admin.display(description="served model id")
    def served_model_id(self, obj: Endpoint) -> str:
        return obj.served_model_id


@admin.register(Operation)
class OperationAdmin(NoAddOrDelete, AuditedModelAdmin):
    list_display = ("id", "kind", "state", "endpoint", "cluster", "attempts", "created_at", "finished_at")
    list_filter = ("kind", "state", "cluster")
    list_select_related = ("endpoint__team", "cluster")
    search_fields = ("endpoint__name", "message")
    readonly_fields = _all_fields_but(Operation, "id")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # history: viewable, never edited


@admin.register(QuotaRequest)
class QuotaRequestAdmin(NoAddOrDelete, AuditedModelAdmin):
    list_display = ("team", "gpu_type", "requested_limit", "state", "requested_by", "created_at", "decided_at")
    list_filter = ("state", "gpu_type")
    list_select_related = ("team", "gpu_type", "requested_by")
    search_fields = ("team__slug", "justification")
    readonly_fields = _all_fields_but(QuotaRequest, "id")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # decided through the approval queue, where the quota change and the audit happen
