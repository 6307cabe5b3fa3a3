from __future__ import annotations

from django.contrib import admin

from apps.core.admin import PlatformAdminOnly, ReadOnlyAdminMixin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, PlatformAdminOnly, admin.ModelAdmin):
    """Append-only history: visible here, never added, changed or deleted (a database trigger agrees)."""

    list_display = ("created_at", "actor_label", "action", "target_type", "target_label", "team", "source_ip")
    list_filter = ("action", "target_type")
    list_select_related = ("team",)
    search_fields = ("action", "actor_label", "target_label", "target_id")
    date_hierarchy = "created_at"
    readonly_fields = (
        "created_at",
        "actor",
        "actor_label",
        "action",
        "target_type",
        "target_id",
        "target_label",
        "team",
        "before",
        "after",
        "source_ip",
    )
    fields = readonly_fields
