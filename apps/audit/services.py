"""Writing audit events. Every mutating service calls `audit_record` inside its transaction."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .models import AuditEvent

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


@dataclass(frozen=True)
class Actor:
    """Who is making a change and from where. Built from a request, or `Actor.system()` for workers."""

    user: User | None
    source_ip: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(user=None, source_ip=None)

    @property
    def label(self) -> str:
        return self.user.get_username() if self.user is not None else "system"


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value


def snapshot(instance: models.Model, fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The audited state of a model instance: concrete fields (foreign keys as ids), JSON-safe."""
    names = fields or [f.attname for f in instance._meta.concrete_fields]
    return {name: _jsonable(_as_stored(instance, name)) for name in names}


def _as_stored(instance: models.Model, name: str) -> Any:
    """The value as the database keeps it: Decimal("10") in a 2-place column is 10.00, so it is no change."""
    value = getattr(instance, name)
    try:
        field = instance._meta.get_field(name)
    except FieldDoesNotExist:
        return value
    if isinstance(field, models.DecimalField) and isinstance(value, decimal.Decimal) and value.is_finite():
        try:
            return value.quantize(decimal.Decimal(1).scaleb(-field.decimal_places))
        except decimal.InvalidOperation:  # more digits than a Decimal context holds: full_clean() refuses it
            return value
    return value


def audit_record(
    *,
    actor: Actor,
    action: str,
    target: models.Model,
    team: Team | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    target_label: str | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_label=actor.label,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk) if target.pk is not None else "",
        target_label=(target_label if target_label is not None else str(target))[:300],
        team=team,
        before=_jsonable(dict(before)) if before is not None else None,
        after=_jsonable(dict(after)) if after is not None else None,
        source_ip=actor.source_ip,
    )


def audit_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose values differ, for compact update events."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}
