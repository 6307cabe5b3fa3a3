"""The one place that turns an identity (local login or an identity provider) into a user, roles and teams.

Entra ID single sign-on (its own issue) verifies the ID token, builds an `Identity` and calls
`identity_sign_in`; nothing else creates users from external identities.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction

from apps.audit.services import Actor, audit_changes, audit_record, snapshot
from apps.teams.models import Membership, Team

from .models import User

PROFILE_FIELDS = ["email", "first_name", "last_name", "is_platform_admin", "is_finance"]


@dataclass(frozen=True)
class Identity:
    issuer: str  # for Entra: the tenant id (tid)
    subject: str  # for Entra: the object id (oid)
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    # None means "the provider says nothing about this": leave what the portal has.
    platform_roles: frozenset[str] | None = None
    team_roles: dict[str, str] | None = field(default=None)  # team slug -> "lead" | "member"


class InactiveUser(Exception):
    """The identity belongs to a user an admin deactivated: no sign-in, and nothing about the user changes."""

    def __init__(self, user: User) -> None:
        super().__init__(f"user {user.pk} is deactivated")
        self.user = user


def identity_sign_in(*, identity: Identity, source_ip: str | None = None) -> User:
    """Find or create the user keyed on (issuer, subject); refresh name, e-mail, roles and IdP memberships.

    Memberships made by hand in the portal are kept; ones that came from the provider are added and removed.
    Raises `InactiveUser` for a deactivated user: the provider vouching for a person does not undo that.
    """
    try:
        return _sign_in(identity=identity, source_ip=source_ip)
    except IntegrityError:
        # A concurrent first sign-in of the same person (two tabs) or a new user taking the same username won the
        # insert. Its row is committed by now, so a second pass finds that user or picks another free username.
        return _sign_in(identity=identity, source_ip=source_ip)


def _sign_in(*, identity: Identity, source_ip: str | None) -> User:
    with transaction.atomic():
        user = (
            User.objects.select_for_update()
            .filter(identity_issuer=identity.issuer, identity_subject=identity.subject)
            .first()
        )
        if user is not None and not user.is_active:
            raise InactiveUser(user)
        created = user is None
        if user is None:
            user = User(
                username=_free_username(identity),
                identity_issuer=identity.issuer,
                identity_subject=identity.subject,
            )
            user.set_unusable_password()
        before = snapshot(user, PROFILE_FIELDS)
        user.email, user.first_name, user.last_name = identity.email, identity.first_name, identity.last_name
        if identity.platform_roles is not None:
            user.is_platform_admin = "admin" in identity.platform_roles
            user.is_finance = "finance" in identity.platform_roles
        user.save()
        actor = Actor(user=user, source_ip=source_ip)
        old, new = audit_changes(before, snapshot(user, PROFILE_FIELDS))
        if not created and new:
            # Roles granted or taken away by the provider are changes like any other.
            audit_record(actor=actor, action="user.update_from_identity", target=user, before=old, after=new)
        if created:
            audit_record(
                actor=actor,
                action="user.create_from_identity",
                target=user,
                after={
                    "issuer": identity.issuer,
                    "subject": identity.subject,
                    "roles": sorted(identity.platform_roles or []),
                },
            )
        if identity.team_roles is not None:
            _sync_memberships(user=user, team_roles=identity.team_roles, actor=actor)
    return user


def _free_username(identity: Identity) -> str:
    """The provider's username if it is valid and free, else a valid variant; the key stays issuer+subject."""
    limit = User._meta.get_field("username").max_length or 150
    base = re.sub(r"[^\w.@+-]", "-", identity.username.strip())[: limit - 12] or "user"
    suffix = re.sub(r"[^\w.@+-]", "-", identity.subject[:8])
    candidates = [base, f"{base}.{suffix}"] + [f"{base}.{suffix}{n}" for n in range(2, 100)]
    taken = set(User.objects.filter(username__in=candidates).values_list("username", flat=True))
    for name in candidates:
        if name not in taken:
            return name
    return f"{base}.{uuid.uuid4().hex[:8]}"


def _sync_memberships(*, user: User, team_roles: dict[str, str], actor: Actor) -> None:
    # An unknown role grants nothing (and removes a membership the provider gave before).
    team_roles = {slug: role for slug, role in team_roles.items() if role in Membership.Role.values}
    teams = {t.slug: t for t in Team.objects.filter(slug__in=team_roles)}
    current = {m.team.slug: m for m in Membership.objects.select_related("team").filter(user=user)}
    for slug, role in team_roles.items():
        team = teams.get(slug)
        if team is None:
            continue
        membership = current.get(slug)
        if membership is None:
            membership = Membership.objects.create(
                user=user, team=team, role=role, source=Membership.Source.IDENTITY_PROVIDER
            )
            audit_record(
                actor=actor,
                action="membership.add",
                target=membership,
                team=team,
                after={"user": user.pk, "role": role, "source": "idp"},
            )
        elif membership.source == Membership.Source.IDENTITY_PROVIDER and membership.role != role:
            before = membership.role
            membership.role = role
            membership.save(update_fields=["role"])
            audit_record(
                actor=actor,
                action="membership.update",
                target=membership,
                team=team,
                before={"role": before},
                after={"role": role},
            )
    for slug, membership in current.items():
        if membership.source == Membership.Source.IDENTITY_PROVIDER and slug not in team_roles:
            audit_record(
                actor=actor,
                action="membership.remove",
                target=membership,
                team=membership.team,
                before={"user": user.pk, "role": membership.role, "source": "idp"},
            )
            membership.delete()
