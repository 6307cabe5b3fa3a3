from __future__ import annotations

import hashlib
import re
import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from apps.teams.models import Membership


class User(AbstractUser):
    """A person. Platform roles live here; team roles live on `teams.Membership`.

    `identity_issuer`/`identity_subject` key users that come from an identity provider (Entra: tid + oid),
    never their e-mail or UPN.
    """

    is_platform_admin = models.BooleanField("admin", default=False, help_text="Curates catalog, prices, quotas.")
    is_finance = models.BooleanField("finance", default=False, help_text="Reads every team's costs and budgets.")
    identity_issuer = models.CharField(max_length=200, blank=True, default="")
    identity_subject = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["identity_issuer", "identity_subject"],
                condition=~models.Q(identity_subject=""),
                name="accounts_user_unique_identity",
            )
        ]

    @property
    def platform_roles(self) -> list[str]:
        return [name for name, on in (("admin", self.is_platform_admin), ("finance", self.is_finance)) if on]


TOKEN_PREFIX = "pareto_"  # noqa: S105 - a public prefix, not a secret


def hash_token(raw: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(raw.encode()).hexdigest()


def new_raw_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the raw token is shown once at creation."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # First characters of the token, so a person can tell their tokens apart.
    hint = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hint}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def normalize_group_id(value: str) -> str:
    """Entra group object ids are GUIDs, which compare case-insensitively; other providers' group names as given."""
    value = value.strip()
    return value.lower() if GUID.match(value) else value


class GroupTeamMapping(models.Model):
    """Members of an identity-provider group belong to a team with a role (single sign-on, docs/sso.md).

    Memberships that come from these mappings are synced at each sign-in; ones made by hand are left alone.
    """

    group_id = models.CharField(
        "group id",
        max_length=200,
        help_text="The group's object id in Entra ID (a GUID, as in the `groups` claim).",
    )
    label = models.CharField(
        "group name",
        max_length=200,
        blank=True,
        default="",
        help_text="The group's display name, for people reading this list. Matching uses the id only.",
    )
    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="group_mappings")
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__slug", "group_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["group_id", "team"],
                name="accounts_groupteammapping_unique_group_team",
                violation_error_message="This group is already mapped to this team; edit that mapping instead.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label or self.group_id} → {self.team.slug} ({self.role})"

    def clean(self) -> None:
        self.group_id = normalize_group_id(self.group_id or "")
        if any(ch.isspace() for ch in self.group_id):
            raise ValidationError({"group_id": "A group id has no spaces: copy the group's Object Id from Entra ID."})
