"""Writes for users and personal API tokens. Each writes an AuditEvent."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor, audit_record, snapshot
from apps.core.services import model_update, save_validated

from .models import ApiToken, User, hash_token, new_raw_token

USER_ROLE_FIELDS = ("is_platform_admin", "is_finance", "is_active")


def user_create_local(
    *,
    actor: Actor,
    username: str,
    password: str,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    is_platform_admin: bool = False,
    is_finance: bool = False,
) -> User:
    from django.contrib.auth.password_validation import validate_password

    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_platform_admin=is_platform_admin,
        is_finance=is_finance,
    )
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    user.set_password(password)
    with transaction.atomic():
        save_validated(user)
        audit_record(
            actor=actor,
            action="user.create",
            target=user,
            after=snapshot(user, ["username", "email", "is_platform_admin", "is_finance"]),
        )
    return user


def user_set_roles(*, actor: Actor, user: User, **roles: bool) -> User:
    return model_update(user, actor=actor, action="user.roles", data=roles, allowed=USER_ROLE_FIELDS)


def api_token_create(
    *, actor: Actor, user: User, name: str, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a personal token. Returns the row and the raw token, which is never stored or shown again."""
    if not name or not name.strip():
        raise ValidationError({"name": "Give the token a name, e.g. what script uses it."})
    if expires_at is not None and not isinstance(expires_at, datetime):
        raise ValidationError({"expires_at": "Give a date and time."})
    if expires_at is not None and timezone.is_naive(expires_at):
        expires_at = timezone.make_aware(expires_at)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    raw = new_raw_token()
    token = ApiToken(user=user, name=name.strip(), key_hash=hash_token(raw), hint=raw[:12], expires_at=expires_at)
    with transaction.atomic():
        save_validated(token)
        audit_record(
            actor=actor,
            action="api_token.create",
            target=token,
            after={"user": user.pk, "name": token.name, "hint": token.hint, "expires_at": expires_at},
        )
    return token, raw


def api_token_revoke(*, actor: Actor, token: ApiToken) -> ApiToken:
    if token.revoked_at is not None:
        return token
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
        if changed:
            audit_record(
                actor=actor,
                action="api_token.revoke",
                target=token,
                before={"revoked_at": None},
                after={"revoked_at": token.revoked_at},
            )
    return token


def api_token_authenticate(raw: str) -> User | None:
    """The user of an active token, updating its last-used time at most once a minute."""
    token = ApiToken.objects.active().select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
