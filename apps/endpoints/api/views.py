from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from apps.accounts.permissions import AdminOnly, access_for
from apps.core.api import AccessMixin, filter_parameter, query_filter
from apps.endpoints import selectors, services
from apps.endpoints.models import Endpoint, QuotaRequest

from .serializers import (
    EndpointSerializer,
    EndpointUpdateSerializer,
    OperationSerializer,
    QuotaRequestSerializer,
    ReasonSerializer,
)

REQUEST_DENIED = "Only an admin or a lead of this team can request and change its endpoints and quota."
TEAM_FILTER = filter_parameter("team", "Only rows of the team with this slug.")
STATE_FILTER = filter_parameter(
    "state",
    "Only endpoints in this state. Without it, deleted and rejected endpoints are left out.",
    enum=Endpoint.State.values,
)
QUOTA_STATE_FILTER = filter_parameter("state", "Only requests in this state.", enum=QuotaRequest.State.values)


class CanManageEndpoints(BasePermission):
    """Reading follows team visibility (the queryset); changing needs admin or a lead of the endpoint's team."""

    message = REQUEST_DENIED

    def has_permission(self, request: Request, view: APIView) -> bool:
        return access_for(request.user).authenticated

    def has_object_permission(self, request: Request, view: APIView, obj: Endpoint) -> bool:
        return request.method in SAFE_METHODS or access_for(request.user).can_request_endpoints(obj.team_id)


@extend_schema_view(
    list=extend_schema(parameters=[TEAM_FILTER, STATE_FILTER]),
    create=extend_schema(
        description="Request an endpoint. It is approved at once when it fits the team's free quota and the team's "
        "policy is `auto`; otherwise it waits in `pending_approval` with the numbers in `state_message`."
    ),
    partial_update=extend_schema(
        description="Scale a ready endpoint (min/max replicas) or change its engine arguments; it goes to "
        "`updating`. Growth must fit the team's free quota."
    ),
    destroy=extend_schema(
        description="Delete an endpoint: 202 with the endpoint in `deleting` while the cluster removes it "
        "(a request still waiting for approval is withdrawn at once: `deleted`).",
        responses={202: EndpointSerializer},
    ),
)
@extend_schema(tags=["endpoints"])
class EndpointViewSet(AccessMixin, viewsets.ModelViewSet):
    """Endpoints of the teams the caller sees; leads of the team and admins request and change them."""

    permission_classes = [CanManageEndpoints]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Endpoint]:
        qs = selectors.endpoints_visible(access=self.access).order_by("team__slug", "name", "-created_at")
        if self.action != "list":
            return qs
        team = query_filter(self.request, "team")
        if team:
            qs = qs.filter(team__slug=team)
        state = query_filter(self.request, "state", choices=Endpoint.State.values)
        return qs.filter(state=state) if state else selectors.live(qs)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "partial_update":
            return EndpointUpdateSerializer
        if self.action == "reject":
            return ReasonSerializer
        if self.action == "operations":
            return OperationSerializer
        return EndpointSerializer

    def _fresh(self, endpoint: Endpoint) -> Endpoint:
        # Answer with the related names loaded, as a read would (and whatever the service changed).
        return selectors.endpoints_visible(access=self.access).get(pk=endpoint.pk)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        data = dict(serializer.validated_data)
        if not self.access.can_request_endpoints(data["team"].pk):
            raise exceptions.PermissionDenied(REQUEST_DENIED)
        serializer.instance = self._fresh(services.endpoint_request(actor=self.actor, **data))

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        endpoint = services.endpoint_update(
            actor=self.actor, endpoint=cast(Endpoint, serializer.instance), **serializer.validated_data
        )
        serializer.instance = self._fresh(endpoint)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = services.endpoint_delete(actor=self.actor, endpoint=self.get_object())
        return Response(EndpointSerializer(self._fresh(endpoint)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={200: EndpointSerializer},
        description="Approve a request waiting for approval (admins). If it does not fit the team's free quota, "
        "the quota is raised just enough, and that change is audited too.",
    )
    @action(detail=True, methods=["post"], permission_classes=[AdminOnly])
    def approve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = services.endpoint_approve(actor=self.actor, endpoint=self.get_object())
        return Response(EndpointSerializer(self._fresh(endpoint)).data)

    @extend_schema(
        request=ReasonSerializer,
        responses={200: EndpointSerializer},
        description="Reject a request waiting for approval (admins); the reason is required and shown to the team.",
    )
    @action(detail=True, methods=["post"], permission_classes=[AdminOnly])
    def reject(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        endpoint = services.endpoint_reject(
            actor=self.actor, endpoint=endpoint, reason=body.validated_data.get("reason", "")
        )
        return Response(EndpointSerializer(self._fresh(endpoint)).data)

    @extend_schema(
        request=None,
        responses={200: EndpointSerializer},
        description="Try a failed endpoint again: it re-reserves its GPUs (they must fit) and is applied anew.",
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = services.endpoint_retry(actor=self.actor, endpoint=self.get_object())
        return Response(EndpointSerializer(self._fresh(endpoint)).data)

    @extend_schema(
        request=None,
        responses={200: OperationSerializer(many=True)},
        description="The endpoint's cluster operations, newest first.",
    )
    @action(detail=True, methods=["get"])
    def operations(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        endpoint = self.get_object()
        rows = endpoint.operations.select_related("cluster").order_by("-created_at", "-id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(OperationSerializer(page, many=True).data)


class SignedIn(BasePermission):
    """Reading follows team visibility (the queryset); the actions check their own rules."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return access_for(request.user).authenticated


@extend_schema_view(
    list=extend_schema(parameters=[TEAM_FILTER, QUOTA_STATE_FILTER]),
    create=extend_schema(description="Ask for a higher GPU quota for a team you lead; an admin approves or denies."),
)
@extend_schema(tags=["endpoints"])
class QuotaRequestViewSet(
    AccessMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Requests for more GPU quota, of the teams the caller sees. Leads create them; admins decide."""

    serializer_class = QuotaRequestSerializer
    permission_classes = [SignedIn]

    def get_queryset(self) -> QuerySet[QuotaRequest]:
        qs = self.access.scope(
            QuotaRequest.objects.select_related("team", "gpu_type", "requested_by", "decided_by").order_by(
                "-created_at", "-id"
            )
        )
        if self.action != "list":
            return qs
        team = query_filter(self.request, "team")
        if team:
            qs = qs.filter(team__slug=team)
        state = query_filter(self.request, "state", choices=QuotaRequest.State.values)
        return qs.filter(state=state) if state else qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return ReasonSerializer if self.action == "deny" else QuotaRequestSerializer

    def _fresh(self, quota_request: QuotaRequest) -> QuotaRequest:
        return self.access.scope(
            QuotaRequest.objects.select_related("team", "gpu_type", "requested_by", "decided_by")
        ).get(pk=quota_request.pk)

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        data = dict(serializer.validated_data)
        if not self.access.can_request_endpoints(data["team"].pk):
            raise exceptions.PermissionDenied(REQUEST_DENIED)
        data.setdefault("justification", "")
        serializer.instance = self._fresh(services.quota_request_create(actor=self.actor, **data))

    @extend_schema(
        request=None,
        responses={200: QuotaRequestSerializer},
        description="Approve a pending request (admins): the team's quota becomes the requested limit.",
    )
    @action(detail=True, methods=["post"], permission_classes=[AdminOnly])
    def approve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        quota_request = services.quota_request_approve(actor=self.actor, request=self.get_object())
        return Response(QuotaRequestSerializer(self._fresh(quota_request)).data)

    @extend_schema(
        request=ReasonSerializer,
        responses={200: QuotaRequestSerializer},
        description="Deny a pending request (admins); the reason is required and shown to the team.",
    )
    @action(detail=True, methods=["post"], permission_classes=[AdminOnly])
    def deny(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        quota_request = self.get_object()
        body = ReasonSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        quota_request = services.quota_request_deny(
            actor=self.actor, request=quota_request, reason=body.validated_data.get("reason", "")
        )
        return Response(QuotaRequestSerializer(self._fresh(quota_request)).data)
