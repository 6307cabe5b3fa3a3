"""Reads of users and personal API tokens shared by pages and the API."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from .models import ApiToken, User


def platform_admins() -> QuerySet[User]:
    """Active people who can grant roles: shown to someone who has none yet."""
    return User.objects.filter(Q(is_platform_admin=True) | Q(is_superuser=True), is_active=True).order_by("username")


def api_tokens_of(*, user: User) -> QuerySet[ApiToken]:
    """A person's own tokens, newest first. There is no selector for other people's tokens on purpose."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
