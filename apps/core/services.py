"""Small helpers the apps' services share: validated create/update/delete with an audit event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from apps.audit.services import Actor, audit_changes, audit_record, snapshot

if TYPE_CHECKING:
    from apps.teams.models import Team

M = TypeVar("M", bound=models.Model)


def save_validated(instance: models.Model, **save_kwargs: Any) -> None:
    instance.full_clean()
    _save_checked(instance, **save_kwargs)


def _save_checked(instance: models.Model, **save_kwargs: Any) -> None:
    """Save an instance that full_clean() accepted, turning a lost race into a field error."""
    try:
        # A savepoint, so that a unique race that slips past full_clean() leaves the outer transaction usable.
        with transaction.atomic():
            instance.save(**save_kwargs)
    except IntegrityError as exc:  # a concurrent writer won the race that full_clean() checked
        # The winner has committed by now (PostgreSQL waits for it before reporting a unique violation), so
        # validating again names the field: "Team with this Slug already exists.", a deleted GPU type, ...
        instance.full_clean()
        raise ValidationError("This conflicts with a change someone else just made; try again.") from exc


def whole_number(value: Any, *, field: str, message: str) -> int:
    """A count given as an int or a string of digits; anything else (negative, 1.5, "abc") is `message`."""
    if isinstance(value, bool):
        raise ValidationError({field: message})
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            raise ValidationError({field: message})
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValidationError({field: message})
    return value


def model_create(
    model: type[M],
    *,
    actor: Actor,
    action: str,
    data: Mapping[str, Any],
    team: Team | None = None,
) -> M:
    with transaction.atomic():
        instance = model(**data)
        save_validated(instance)
        audit_record(actor=actor, action=action, target=instance, team=team, after=snapshot(instance))
    return instance


def model_update(
    instance: M,
    *,
    actor: Actor,
    action: str,
    data: Mapping[str, Any],
    allowed: Iterable[str],
    team: Team | None = None,
) -> M:
    """Apply `data` (only keys in `allowed`), validate, save and audit what changed. No change, no event."""
    allowed = set(allowed)
    unknown = set(data) - allowed
    if unknown:
        raise ValidationError({name: "This field cannot be changed here." for name in sorted(unknown)})
    with transaction.atomic():
        locked = type(instance)._default_manager.select_for_update().filter(pk=instance.pk).first()
        if locked is None:
            raise ValidationError(f"{instance} no longer exists; it was deleted meanwhile.")
        before = snapshot(locked)
        for name, value in data.items():
            setattr(locked, name, value)
        # Validate first: full_clean() turns "80" into 80, so an update to the same value is no change.
        locked.full_clean()
        after = snapshot(locked)
        old, new = audit_changes(before, after)
        if not new:
            return locked
        _save_checked(locked)
        audit_record(actor=actor, action=action, target=locked, team=team, before=old, after=new)
    return locked


def model_delete(instance: models.Model, *, actor: Actor, action: str, team: Team | None = None) -> None:
    with transaction.atomic():
        before = snapshot(instance)
        label = str(instance)
        # The audit row is written first so it can still name the target's primary key.
        audit_record(actor=actor, action=action, target=instance, team=team, before=before, target_label=label)
        try:
            instance.delete()
        except (models.ProtectedError, models.RestrictedError) as exc:
            users = exc.protected_objects if isinstance(exc, models.ProtectedError) else exc.restricted_objects
            names = sorted({str(obj._meta.verbose_name_plural) for obj in users})
            raise ValidationError(f"{instance} is still used by: {', '.join(names)}.") from exc
