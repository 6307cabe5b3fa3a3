from __future__ import annotations

from rest_framework import serializers

from apps.catalog.models import CatalogModel
from apps.catalog.services import CATALOG_FIELDS
from apps.inventory.models import GpuType


class CatalogModelSerializer(serializers.ModelSerializer[CatalogModel]):
    recommended_gpu_type = serializers.SlugRelatedField(
        slug_field="sku",
        queryset=GpuType.objects.all(),
        required=False,
        allow_null=True,
        help_text="SKU of the GPU type this model is sized for.",
    )

    class Meta:
        model = CatalogModel
        fields = ("id", *CATALOG_FIELDS, "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")
