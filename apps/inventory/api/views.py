from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from apps.accounts.permissions import AdminOnly, AdminWritesOthersRead
from apps.core.api import AccessMixin, filter_parameter, query_filter
from apps.inventory import services
from apps.inventory.models import Cluster, GpuPrice, GpuType
from apps.inventory.selectors import clusters_with_inventory, gpu_types_with_current_price

from .serializers import (
    ClusterInventorySerializer,
    ClusterPublicSerializer,
    ClusterSerializer,
    GpuPriceSerializer,
    GpuTypeSerializer,
)


@extend_schema(tags=["inventory"])
class GpuTypeViewSet(AccessMixin, viewsets.ModelViewSet):
    """GPU types with the hourly price in force now. Everyone reads; admins edit."""

    serializer_class = GpuTypeSerializer
    permission_classes = [AdminWritesOthersRead]

    def get_queryset(self) -> QuerySet[GpuType]:
        return gpu_types_with_current_price()

    def _annotated(self, gpu_type: GpuType) -> GpuType:
        # Answer with the current price too, as a read would.
        return self.get_queryset().get(pk=gpu_type.pk)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        created = services.gpu_type_create(actor=self.actor, **serializer.validated_data)
        serializer.instance = self._annotated(created)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        updated = services.gpu_type_update(
            actor=self.actor, gpu_type=cast(GpuType, serializer.instance), **serializer.validated_data
        )
        serializer.instance = self._annotated(updated)

    def perform_destroy(self, instance: GpuType) -> None:
        services.gpu_type_delete(actor=self.actor, gpu_type=instance)


@extend_schema_view(
    list=extend_schema(parameters=[filter_parameter("gpu_type", "Only prices of the GPU type with this SKU.")]),
    create=extend_schema(
        description="Add the next price of a GPU type. It must start after every existing price of that type."
    ),
    destroy=extend_schema(description="Withdraw a scheduled price. A price already in force is history and stays."),
)
@extend_schema(tags=["inventory"])
class GpuPriceViewSet(
    AccessMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Price history per GPU type. Prices are never edited: a correction is a new price."""

    serializer_class = GpuPriceSerializer
    permission_classes = [AdminWritesOthersRead]

    def get_queryset(self) -> QuerySet[GpuPrice]:
        qs = GpuPrice.objects.select_related("gpu_type").order_by("gpu_type__sku", "-effective_from")
        if self.action == "list":
            sku = query_filter(self.request, "gpu_type")
            if sku:
                qs = qs.filter(gpu_type__sku=sku)
        return qs

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.gpu_price_add(actor=self.actor, **serializer.validated_data)

    def perform_destroy(self, instance: GpuPrice) -> None:
        services.gpu_price_delete(actor=self.actor, price=instance)


CLUSTER_VIEW = PolymorphicProxySerializer(
    component_name="ClusterView",
    serializers=[ClusterSerializer, ClusterPublicSerializer],
    resource_type_field_name=None,
    many=False,
)
CLUSTER_LIST = PolymorphicProxySerializer(
    component_name="ClusterView",
    serializers=[ClusterSerializer, ClusterPublicSerializer],
    resource_type_field_name=None,
    many=True,
)


@extend_schema_view(
    list=extend_schema(
        responses=CLUSTER_LIST,
        description="Admins get every field; others get name, runtime, description and inventory only.",
    ),
    retrieve=extend_schema(
        responses=CLUSTER_VIEW,
        description="Admins get every field; others get name, runtime, description and inventory only.",
    ),
)
@extend_schema(tags=["inventory"])
class ClusterViewSet(AccessMixin, viewsets.ModelViewSet):
    """Clusters and their GPU inventory. Connection settings are for admins' eyes only."""

    permission_classes = [AdminWritesOthersRead]

    def get_queryset(self) -> QuerySet[Cluster]:
        return clusters_with_inventory()

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "set_inventory":
            return ClusterInventorySerializer
        if getattr(self, "swagger_fake_view", False) or self.access.is_admin:
            return ClusterSerializer
        return ClusterPublicSerializer

    def _fresh(self, cluster: Cluster) -> Cluster:
        return self.get_queryset().get(pk=cluster.pk)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        created = services.cluster_create(actor=self.actor, **serializer.validated_data)
        serializer.instance = self._fresh(created)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        updated = services.cluster_update(
            actor=self.actor, cluster=cast(Cluster, serializer.instance), **serializer.validated_data
        )
        serializer.instance = self._fresh(updated)

    def perform_destroy(self, instance: Cluster) -> None:
        services.cluster_delete(actor=self.actor, cluster=instance)

    @extend_schema(
        request=ClusterInventorySerializer,
        responses={200: ClusterSerializer},
        description="Set how many GPUs of a type the cluster has; a count of 0 removes the type.",
    )
    @action(detail=True, methods=["post"], url_path="inventory", permission_classes=[AdminOnly])
    def set_inventory(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        cluster = self.get_object()
        serializer = ClusterInventorySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.cluster_inventory_set(actor=self.actor, cluster=cluster, **serializer.validated_data)
        return Response(ClusterSerializer(self._fresh(cluster)).data, status=status.HTTP_200_OK)
