from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from apps.inventory.models import Cluster, ClusterGpuInventory, GpuPrice, GpuType
from apps.inventory.services import CLUSTER_FIELDS, GPU_TYPE_FIELDS


class GpuTypeSerializer(serializers.ModelSerializer[GpuType]):
    # Annotated by inventory.selectors.gpu_types_with_current_price; null while no price is in force.
    current_price = serializers.DecimalField(
        max_digits=12, decimal_places=4, read_only=True, allow_null=True, help_text="Hourly price per GPU now."
    )
    current_currency = serializers.CharField(read_only=True, allow_null=True)
    current_is_example = serializers.BooleanField(read_only=True, allow_null=True)

    class Meta:
        model = GpuType
        fields = ("id", *GPU_TYPE_FIELDS, "current_price", "current_currency", "current_is_example", "created_at")
        read_only_fields = ("id", "created_at")


class GpuPriceSerializer(serializers.ModelSerializer[GpuPrice]):
    gpu_type = serializers.SlugRelatedField(slug_field="sku", queryset=GpuType.objects.all(), help_text="GPU type SKU.")
    is_scheduled = serializers.SerializerMethodField(
        help_text="Starts in the future; only such a price can be deleted."
    )

    class Meta:
        model = GpuPrice
        fields = (
            "id",
            "gpu_type",
            "hourly_price",
            "currency",
            "effective_from",
            "is_example",
            "note",
            "is_scheduled",
            "created_at",
        )
        read_only_fields = ("id", "created_at")
        # Overlapping periods are the service's rule and answer on `effective_from`.
        validators: list = []

    def get_is_scheduled(self, price: GpuPrice) -> bool:
        return price.effective_from > timezone.now()


class ClusterInventorySerializer(serializers.ModelSerializer[ClusterGpuInventory]):
    gpu_type = serializers.SlugRelatedField(slug_field="sku", queryset=GpuType.objects.all(), help_text="GPU type SKU.")
    count = serializers.IntegerField(min_value=0, help_text="GPUs of this type in the cluster; 0 removes the row.")

    class Meta:
        model = ClusterGpuInventory
        fields = ("gpu_type", "count")
        validators: list = []


class ClusterSerializer(serializers.ModelSerializer[Cluster]):
    """A cluster with its connection settings (admins only)."""

    inventory = ClusterInventorySerializer(many=True, read_only=True)
    secret_env = serializers.DictField(
        child=serializers.CharField(),
        required=False,
        help_text='Secret name -> NAME of the variable that holds it, e.g. {"hf_token": "PARETO_HF_TOKEN"}.',
    )

    class Meta:
        model = Cluster
        fields = ("id", *CLUSTER_FIELDS, "inventory", "created_at")
        read_only_fields = ("id", "created_at")


class ClusterPublicSerializer(serializers.ModelSerializer[Cluster]):
    """What everyone may know of a cluster: no connection settings."""

    inventory = ClusterInventorySerializer(many=True, read_only=True)

    class Meta:
        model = Cluster
        fields = ("id", "name", "runtime", "description", "inventory")
        read_only_fields = fields
