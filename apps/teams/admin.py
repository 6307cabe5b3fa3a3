from __future__ import annotations

from django.contrib import admin

from apps.core.admin import AuditedModelAdmin

from .models import Budget, GpuQuota, Membership, Team


@admin.register(Team)
class TeamAdmin(AuditedModelAdmin):
    list_display = ("slug", "name", "cost_center", "created_at")
    search_fields = ("slug", "name", "cost_center")


@admin.register(Membership)
class MembershipAdmin(AuditedModelAdmin):
    list_display = ("user", "team", "role", "source", "created_at")
    list_filter = ("role", "source", "team")
    list_select_related = ("user", "team")
    search_fields = ("user__username", "team__slug")
    raw_id_fields = ("user",)


@admin.register(GpuQuota)
class GpuQuotaAdmin(AuditedModelAdmin):
    audit_prefix = "quota"
    list_display = ("team", "gpu_type", "limit", "updated_at")
    list_filter = ("gpu_type",)
    list_select_related = ("team", "gpu_type")
    search_fields = ("team__slug",)


@admin.register(Budget)
class BudgetAdmin(AuditedModelAdmin):
    list_display = ("team", "monthly_amount", "currency", "alert_thresholds", "updated_at")
    list_select_related = ("team",)
    search_fields = ("team__slug",)
