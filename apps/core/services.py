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
    try:
        # A savepoint, so that a unique race that slips past full_clean() leaves the outer transaction usable.
        with transaction.atomic():
            instance.save(**save_kwargs)
    except IntegrityError as exc:  # a concurrent insert won the race that full_clean() checked
        raise ValidationError(f"Conflicts with an existing record: {exc.__cause__ or exc}") from exc


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
        locked = type(instance)._default_manager.select_for_update().get(pk=instance.pk)
        before = snapshot(locked)
        for name, value in data.items():
            setattr(locked, name, value)
        after = snapshot(locked)
        old, new = audit_changes(before, after)
        if not new:
            return locked
        save_validated(locked)
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
        except models.ProtectedError as exc:
            names = sorted({obj._meta.verbose_name_plural for obj in exc.protected_objects})
            raise ValidationError(f"{instance} is still used by: {', '.join(str(n) for n in names)}.") from exc
