from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from .models import TOKEN_PREFIX
from .services import api_token_authenticate


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer pareto_...` with a personal API token."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'.")
        raw = parts[1].decode(errors="replace")
        if not raw.startswith(TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed("Not a Pareto API token.")
        user = api_token_authenticate(raw)
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return (user, None)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword
