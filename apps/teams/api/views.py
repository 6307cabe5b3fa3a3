from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, viewsets
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from apps.accounts.permissions import AdminWritesOthersRead, access_for
from apps.core.api import AccessMixin, filter_parameter, query_filter
from apps.teams import services
from apps.teams.models import Budget, GpuQuota, Membership, Team

from .serializers import (
    BudgetSerializer,
    BudgetUpdateSerializer,
    GpuQuotaLimitSerializer,
    GpuQuotaSerializer,
    MembershipRoleSerializer,
    MembershipSerializer,
    TeamSerializer,
    TeamUpdateSerializer,
)

TEAM_FILTER = filter_parameter("team", "Only rows of the team with this slug.")


def _filter_team(request: Request, qs: QuerySet[Any]) -> QuerySet[Any]:
    slug = query_filter(request, "team")
    return qs.filter(team__slug=slug) if slug else qs


@extend_schema(tags=["teams"])
class TeamViewSet(AccessMixin, viewsets.ModelViewSet):
    """Teams. Admins and finance see every team, everyone else the teams they belong to; admins edit."""

    permission_classes = [AdminWritesOthersRead]
    lookup_field = "slug"

    def get_queryset(self) -> QuerySet[Team]:
        return self.access.scope(Team.objects.order_by("slug"), "id")

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return TeamUpdateSerializer if self.action in ("update", "partial_update") else TeamSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.team_create(actor=self.actor, **serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.team_update(
            actor=self.actor, team=cast(Team, serializer.instance), **serializer.validated_data
        )

    def perform_destroy(self, instance: Team) -> None:
        services.team_delete(actor=self.actor, team=instance)


class CanManageMembers(BasePermission):
    """Reading follows team visibility (the queryset); changing needs admin or the lead of that team."""

    message = "Only an admin or a lead of this team can manage its members."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return access_for(request.user).authenticated

    def has_object_permission(self, request: Request, view: APIView, obj: Membership) -> bool:
        return request.method in SAFE_METHODS or access_for(request.user).can_manage_members(obj.team_id)


@extend_schema_view(list=extend_schema(parameters=[TEAM_FILTER]))
@extend_schema(tags=["teams"])
class MembershipViewSet(AccessMixin, viewsets.ModelViewSet):
    """Who is in which team, as lead or member. Admins and a team's leads add, change and remove members."""

    permission_classes = [CanManageMembers]

    def get_queryset(self) -> QuerySet[Membership]:
        qs = self.access.scope(
            Membership.objects.select_related("team", "user").order_by("team__slug", "user__username")
        )
        return _filter_team(self.request, qs) if self.action == "list" else qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return MembershipRoleSerializer if self.action in ("update", "partial_update") else MembershipSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        team: Team = serializer.validated_data["team"]
        if not self.access.can_manage_members(team.pk):
            raise exceptions.PermissionDenied(CanManageMembers.message)
        serializer.instance = services.membership_add(actor=self.actor, **serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        membership = cast(Membership, serializer.instance)
        role = serializer.validated_data.get("role", membership.role)
        serializer.instance = services.membership_set_role(actor=self.actor, membership=membership, role=role)

    def perform_destroy(self, instance: Membership) -> None:
        services.membership_remove(actor=self.actor, membership=instance)


@extend_schema_view(
    list=extend_schema(parameters=[TEAM_FILTER]),
    create=extend_schema(description="Set a team's quota for a GPU type; an existing quota of the pair is replaced."),
)
@extend_schema(tags=["teams"])
class GpuQuotaViewSet(AccessMixin, viewsets.ModelViewSet):
    """GPU quotas per team and GPU type. Read by whoever sees the team; set by admins."""

    permission_classes = [AdminWritesOthersRead]

    def get_queryset(self) -> QuerySet[GpuQuota]:
        qs = self.access.scope(
            GpuQuota.objects.select_related("team", "gpu_type").order_by("team__slug", "gpu_type__sku")
        )
        return _filter_team(self.request, qs) if self.action == "list" else qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return GpuQuotaLimitSerializer if self.action in ("update", "partial_update") else GpuQuotaSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.quota_set(actor=self.actor, **serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        quota = cast(GpuQuota, serializer.instance)
        serializer.instance = services.quota_set(
            actor=self.actor,
            team=quota.team,
            gpu_type=quota.gpu_type,
            limit=serializer.validated_data.get("limit", quota.limit),
        )

    def perform_destroy(self, instance: GpuQuota) -> None:
        services.quota_delete(actor=self.actor, quota=instance)


class CanEditBudget(BasePermission):
    message = "Only admins and finance can change budgets."

    def has_permission(self, request: Request, view: APIView) -> bool:
        access = access_for(request.user)
        if request.method in SAFE_METHODS:
            return access.authenticated
        return access.can_edit_budget()


@extend_schema_view(
    list=extend_schema(parameters=[TEAM_FILTER]),
    create=extend_schema(description="Set a team's monthly budget; an existing budget of the team is replaced."),
)
@extend_schema(tags=["teams"])
class BudgetViewSet(AccessMixin, viewsets.ModelViewSet):
    """Monthly budgets per team. Read by whoever sees the team; set by admins and finance."""

    permission_classes = [CanEditBudget]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Budget]:
        qs = self.access.scope(Budget.objects.select_related("team").order_by("team__slug"))
        return _filter_team(self.request, qs) if self.action == "list" else qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return BudgetUpdateSerializer if self.action in ("update", "partial_update") else BudgetSerializer

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        serializer.instance = services.budget_set(actor=self.actor, **serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        budget = cast(Budget, serializer.instance)
        data = serializer.validated_data
        serializer.instance = services.budget_set(
            actor=self.actor,
            team=budget.team,
            monthly_amount=data.get("monthly_amount", budget.monthly_amount),
            currency=data.get("currency", budget.currency),
            alert_thresholds=data.get("alert_thresholds"),
        )
