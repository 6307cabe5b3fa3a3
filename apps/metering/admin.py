"""Metering rows in the Django admin, for looking only: usage, statements and alerts are history, written by the
metering jobs and services (statements are closed from the portal, where the action is audited)."""

from __future__ import annotations

from django.contrib import admin

from apps.core.admin import PlatformAdminOnly, ReadOnlyAdminMixin

from .models import BudgetAlert, ScrapeTarget, Statement, StatementLine, UsageDay, UsageHour


class ReadOnly(PlatformAdminOnly, ReadOnlyAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    pass


@admin.register(UsageHour)
class UsageHourAdmin(ReadOnly):
    list_display = ("hour", "endpoint", "team", "rate", "currency", "gpu_seconds", "requests", "prompt_tokens")
    list_filter = ("currency",)
    list_select_related = ("endpoint__team", "team")
    date_hierarchy = "hour"


@admin.register(UsageDay)
class UsageDayAdmin(ReadOnly):
    list_display = ("day", "endpoint", "team", "rate", "currency", "gpu_seconds", "requests", "prompt_tokens")
    list_filter = ("currency",)
    list_select_related = ("endpoint__team", "team")
    date_hierarchy = "day"


class StatementLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = StatementLine
    extra = 0
    can_delete = False
    fields = ("kind", "endpoint_name", "gpu_type_sku", "gpu_hours", "rate", "cost", "prompt_tokens", "note")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(Statement)
class StatementAdmin(ReadOnly):
    list_display = ("month", "team", "currency", "status", "total", "generated_at", "closed_at")
    list_filter = ("status", "currency", "month")
    list_select_related = ("team",)
    inlines = [StatementLineInline]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnly):
    list_display = ("month", "team", "threshold", "spent", "budget", "currency", "created_at")
    list_select_related = ("team",)


@admin.register(ScrapeTarget)
class ScrapeTargetAdmin(ReadOnly):
    list_display = ("cluster", "url", "last_success_at", "last_attempt_at", "last_error")
    list_select_related = ("cluster",)
