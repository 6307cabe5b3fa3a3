from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from apps.accounts.permissions import CanViewAudit
from apps.audit.models import AuditEvent
from apps.core.api import AccessMixin, filter_parameter, query_filter

from .serializers import AuditEventSerializer


@extend_schema_view(
    list=extend_schema(
        parameters=[
            filter_parameter("action", "Only events with this action, e.g. team.create."),
            filter_parameter("team", "Only events of the team with this slug."),
            filter_parameter("target_type", "Only events about this kind of row, e.g. teams.team."),
            filter_parameter("actor", "Only events made by this username ('system' for workers)."),
        ]
    )
)
@extend_schema(tags=["audit"])
class AuditEventViewSet(AccessMixin, viewsets.ReadOnlyModelViewSet):
    """Every change made through Pareto, newest first. Admins and finance read all; leads their teams'."""

    serializer_class = AuditEventSerializer
    permission_classes = [CanViewAudit]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        qs = self.access.scope_audit(AuditEvent.objects.select_related("team").order_by("-created_at", "-id"))
        if self.action != "list":
            return qs
        filters = {
            "action": query_filter(self.request, "action"),
            "team__slug": query_filter(self.request, "team"),
            "target_type": query_filter(self.request, "target_type"),
            "actor_label": query_filter(self.request, "actor"),
        }
        return qs.filter(**{name: value for name, value in filters.items() if value is not None})
