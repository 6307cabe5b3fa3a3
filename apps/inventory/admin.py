from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from apps.core.admin import AuditedModelAdmin, PlatformAdminOnly, ReadOnlyAdminMixin
from apps.core.forms import add_service_errors

from .forms import ClusterForm
from .models import Cluster, ClusterGpuInventory, GpuPrice, GpuType
from .services import _check_cluster


class GpuPriceInline(admin.TabularInline):
    """Price history is read-only: a price is added (never edited) in the portal, where overlaps are refused."""

    model = GpuPrice
    fields = ("hourly_price", "currency", "effective_from", "is_example", "note", "created_at")
    readonly_fields = fields
    ordering = ("-effective_from",)
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(GpuType)
class GpuTypeAdmin(AuditedModelAdmin):
    list_display = ("sku", "memory_gib", "ray_accelerator_type", "node_selector_label", "node_selector_value")
    search_fields = ("sku",)
    inlines = (GpuPriceInline,)


@admin.register(GpuPrice)
class GpuPriceAdmin(ReadOnlyAdminMixin, PlatformAdminOnly, admin.ModelAdmin):
    list_display = ("gpu_type", "hourly_price", "currency", "effective_from", "is_example", "note")
    list_filter = ("gpu_type", "is_example")
    list_select_related = ("gpu_type",)


class ClusterGpuInventoryInline(admin.TabularInline):
    model = ClusterGpuInventory
    fields = ("gpu_type", "count")
    extra = 0


class ClusterAdminForm(ClusterForm):
    """The portal's rules for clusters (runtime fields, secrets only as variable names) apply here too."""

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        try:
            _check_cluster(data)
        except ValidationError as exc:
            add_service_errors(self, exc)
        return data


@admin.register(Cluster)
class ClusterAdmin(AuditedModelAdmin):
    form = ClusterAdminForm
    list_display = ("name", "runtime", "ray_dashboard_url", "kube_auth", "kube_context")
    list_filter = ("runtime",)
    search_fields = ("name",)
    inlines = (ClusterGpuInventoryInline,)
