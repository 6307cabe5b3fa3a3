"""API plumbing shared by every app: error format, the request -> Actor bridge, pagination, filters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.accounts.permissions import Access, access_for
from apps.audit.services import Actor

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.generics import GenericAPIView

    from apps.accounts.models import User

    _ViewBase = GenericAPIView[Any]
else:
    # Importing rest_framework.generics here would import this module back for DEFAULT_PAGINATION_CLASS.
    _ViewBase = object


def client_ip(request: HttpRequest | Request) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR") or None


def actor_from(request: HttpRequest | Request) -> Actor:
    user = request.user if request.user.is_authenticated else None
    return Actor(user=user, source_ip=client_ip(request))  # type: ignore[arg-type]


def validation_error_detail(exc: DjangoValidationError) -> dict[str, Any]:
    """Django ValidationError -> {"field": ["message", ...]}; errors without a field go to non_field_errors."""
    if hasattr(exc, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): messages
            for field, messages in exc.message_dict.items()
        }
    return {"non_field_errors": exc.messages}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(validation_error_detail(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    return drf_exception_handler(exc, context)


class Pagination(PageNumberPagination):
    """`?page=N`, and `?page_size=N` up to 200 for scripts that want fewer round trips."""

    page_size_query_param = "page_size"
    max_page_size = 200


class AccessMixin(_ViewBase):
    """`self.access` (roles and teams, computed once per request) and `self.actor` for the services.

    Listed before the DRF view class: `class TeamViewSet(AccessMixin, viewsets.ModelViewSet)`.
    """

    @property
    def access(self) -> Access:
        return access_for(self.request.user)

    @property
    def actor(self) -> Actor:
        return actor_from(self.request)

    @property
    def user(self) -> User:
        """The signed-in user; every view that uses it requires sign-in first."""
        if not self.request.user.is_authenticated:
            raise exceptions.NotAuthenticated()
        return cast("User", self.request.user)


def query_filter(request: Request, name: str, *, choices: Iterable[str] | None = None) -> str | None:
    """A query-string filter value, or None when absent; a value outside `choices` is a 400 on that name."""
    value = request.query_params.get(name, "").strip()
    if not value:
        return None
    if choices is not None:
        allowed = list(choices)
        if value not in allowed:
            raise exceptions.ValidationError({name: [f"Select one of: {', '.join(allowed)}."]})
    return value


def filter_parameter(name: str, description: str, *, enum: Iterable[str] | None = None) -> OpenApiParameter:
    """The OpenAPI description of a `query_filter`."""
    return OpenApiParameter(
        name,
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=False,
        description=description,
        enum=list(enum) if enum is not None else None,
    )


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Documents `apps.accounts.authentication.ApiTokenAuthentication` as HTTP bearer auth in the schema."""

    target_class = "apps.accounts.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (`pareto_...`), created at /api/v1/tokens/.",
        }
