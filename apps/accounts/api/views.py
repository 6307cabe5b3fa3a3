from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import services
from apps.accounts.models import ApiToken, User
from apps.core.api import AccessMixin
from apps.teams.models import Membership

from .serializers import ApiTokenCreatedSerializer, ApiTokenSerializer, MeSerializer


@extend_schema_view(
    create=extend_schema(
        request=ApiTokenSerializer,
        responses={201: ApiTokenCreatedSerializer},
        description="Create a personal token. The answer holds the token (`token`) once; it is never shown again.",
    ),
    destroy=extend_schema(description="Revoke the token (same as POST .../revoke/). The row stays, revoked."),
)
@extend_schema(tags=["accounts"])
class ApiTokenViewSet(
    AccessMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your personal API tokens. Everyone sees and revokes only their own."""

    serializer_class = ApiTokenSerializer

    def get_queryset(self) -> QuerySet[ApiToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no signed-in user
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=self.user).order_by("-created_at", "-id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, raw = services.api_token_create(actor=self.actor, user=self.user, **serializer.validated_data)
        token.token = raw  # type: ignore[attr-defined]  # shown in this one answer only
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: ApiToken) -> None:
        services.api_token_revoke(actor=self.actor, token=instance)

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        token = services.api_token_revoke(actor=self.actor, token=self.get_object())
        return Response(ApiTokenSerializer(token).data)


class MeView(AccessMixin, GenericAPIView):  # type: ignore[type-arg]
    """Who the API sees: username, platform roles and team memberships."""

    serializer_class = MeSerializer

    @extend_schema(responses={200: MeSerializer}, tags=["accounts"])
    def get(self, request: Request) -> Response:
        user = User.objects.prefetch_related(
            Prefetch("memberships", queryset=Membership.objects.select_related("team").order_by("team__slug"))
        ).get(pk=self.user.pk)
        return Response(MeSerializer(user).data)
