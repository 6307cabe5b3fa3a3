from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.serializers import BaseSerializer

from apps.accounts.permissions import AdminWritesOthersRead
from apps.catalog import services
from apps.catalog.models import CatalogModel
from apps.core.api import AccessMixin, filter_parameter, query_filter

from .serializers import CatalogModelSerializer


@extend_schema_view(
    list=extend_schema(
        parameters=[filter_parameter("status", "Only models with this status.", enum=CatalogModel.Status.values)]
    )
)
@extend_schema(tags=["catalog"])
class CatalogModelViewSet(AccessMixin, viewsets.ModelViewSet):
    """The model catalog: every signed-in person reads it, platform admins curate it."""

    serializer_class = CatalogModelSerializer
    permission_classes = [AdminWritesOthersRead]

    def get_queryset(self) -> QuerySet[CatalogModel]:
        qs = CatalogModel.objects.select_related("recommended_gpu_type").order_by("name")
        if self.action == "list":
            status = query_filter(self.request, "status", choices=CatalogModel.Status.values)
            if status:
                qs = qs.filter(status=status)
        return qs

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.catalog_model_create(actor=self.actor, **serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.catalog_model_update(
            actor=self.actor, model=cast(CatalogModel, serializer.instance), **serializer.validated_data
        )

    def perform_destroy(self, instance: CatalogModel) -> None:
        services.catalog_model_delete(actor=self.actor, model=instance)
