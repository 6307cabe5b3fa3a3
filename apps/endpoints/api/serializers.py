from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.catalog.models import CatalogModel
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.inventory.models import Cluster, GpuType
from apps.teams.models import Team

SPEC_FIELDS = (
    "team",
    "name",
    "model",
    "cluster",
    "gpu_type",
    "gpus_per_replica",
    "min_replicas",
    "max_replicas",
    "max_model_len",
    "engine_args",
)
STATUS_FIELDS = (
    "id",
    "state",
    "state_message",
    "reserved_gpus",
    "base_url",
    "served_model_id",
    "requested_by",
    "approved_by",
    "generation",
    "observed_generation",
    "observed_replicas",
    "created_at",
    "updated_at",
    "ready_at",
    "deleted_at",
)


def _username_field(*, allow_null: bool = False) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=allow_null, help_text="Username."
    )


class EndpointSerializer(serializers.ModelSerializer[Endpoint]):
    """An endpoint as the API shows it; on create, the request (`endpoint_request` decides what is valid)."""

    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all(), help_text="Team slug.")
    model = serializers.SlugRelatedField(
        slug_field="name", queryset=CatalogModel.objects.all(), help_text="Catalog model name (an approved one)."
    )
    cluster = serializers.SlugRelatedField(slug_field="name", queryset=Cluster.objects.all(), help_text="Cluster name.")
    gpu_type = serializers.SlugRelatedField(
        slug_field="sku",
        queryset=GpuType.objects.all(),
        required=False,
        help_text="GPU type SKU; omitted: the model's recommended type.",
    )
    # Counts are parsed here and judged by the service, so every rule has one message.
    gpus_per_replica = serializers.IntegerField(required=False, help_text="Tensor-parallel size; default 1.")
    min_replicas = serializers.IntegerField(required=False, help_text="Default 1.")
    max_replicas = serializers.IntegerField(
        required=False, help_text="Default 1. GPUs per replica x max replicas are reserved from the team's quota."
    )
    max_model_len = serializers.IntegerField(
        required=False, help_text="Maximum context length in tokens; omitted: the model's own."
    )
    engine_args = serializers.DictField(
        required=False, help_text='vLLM engine arguments from an allowlist, e.g. {"enable_prefix_caching": true}.'
    )
    reserved_gpus = serializers.IntegerField(read_only=True, help_text="GPUs per replica x max replicas.")
    served_model_id = serializers.CharField(read_only=True, help_text="The `model` name clients send.")
    requested_by = _username_field()
    approved_by = _username_field(allow_null=True)

    class Meta:
        model = Endpoint
        fields = SPEC_FIELDS + STATUS_FIELDS
        read_only_fields = tuple(name for name in STATUS_FIELDS if name not in ("reserved_gpus", "served_model_id"))
        # Name clashes, min <= max and the rest are the service's rules, answered on their fields.
        validators: list = []
        extra_kwargs: dict[str, dict[str, Any]] = {"name": {"validators": []}}


class EndpointUpdateSerializer(EndpointSerializer):
    """A ready endpoint changes its replica range and engine arguments only."""

    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[assignment]
    model = serializers.SlugRelatedField(slug_field="name", read_only=True)  # type: ignore[assignment]
    cluster = serializers.SlugRelatedField(slug_field="name", read_only=True)  # type: ignore[assignment]
    gpu_type = serializers.SlugRelatedField(slug_field="sku", read_only=True)  # type: ignore[assignment]
    gpus_per_replica = serializers.IntegerField(read_only=True)  # type: ignore[assignment]
    max_model_len = serializers.IntegerField(read_only=True)  # type: ignore[assignment]

    class Meta(EndpointSerializer.Meta):
        read_only_fields = (*EndpointSerializer.Meta.read_only_fields, "name")


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(
        required=False, allow_blank=True, help_text="Why; required, and shown to the team so they know what to change."
    )


class OperationSerializer(serializers.ModelSerializer[Operation]):
    cluster: serializers.SlugRelatedField[Cluster] = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Operation
        fields = ("id", "kind", "state", "attempts", "message", "cluster", "created_at", "started_at", "finished_at")
        read_only_fields = fields


class QuotaRequestSerializer(serializers.ModelSerializer[QuotaRequest]):
    team = serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all(), help_text="Team slug.")
    gpu_type = serializers.SlugRelatedField(slug_field="sku", queryset=GpuType.objects.all(), help_text="GPU type SKU.")
    requested_limit = serializers.IntegerField(help_text="The new total limit in GPUs, not the increase.")
    justification = serializers.CharField(required=False, allow_blank=True, help_text="What the GPUs are for.")
    requested_by = _username_field()
    decided_by = _username_field(allow_null=True)

    class Meta:
        model = QuotaRequest
        fields = (
            "id",
            "team",
            "gpu_type",
            "requested_limit",
            "justification",
            "state",
            "requested_by",
            "decided_by",
            "decision_reason",
            "created_at",
            "decided_at",
        )
        read_only_fields = ("id", "state", "requested_by", "decided_by", "decision_reason", "created_at", "decided_at")
