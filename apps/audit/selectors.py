"""Reads of audit events, always through the reader's `Access` (see `Access.scope_audit`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.permissions import Access

from .models import AuditEvent

EMPTY = "—"


@dataclass(frozen=True)
class Change:
    """One field of an event, with its value before and after, formatted for people."""

    field: str
    before: str
    after: str


def audit_events(
    *,
    access: Access,
    action: str = "",
    team_id: int | None = None,
    actor: str = "",
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> QuerySet[AuditEvent]:
    """Events this person may read, newest first. `since`/`until` are whole days in the current time zone."""
    qs = access.scope_audit(AuditEvent.objects.select_related("team"))
    if action:
        qs = qs.filter(action=action)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    if actor:
        qs = qs.filter(actor_label__icontains=actor)
    # Compare against day boundaries rather than `created_at__date`, so the created_at index is used.
    if since is not None:
        qs = qs.filter(created_at__gte=_start_of(since))
    if until is not None:
        qs = qs.filter(created_at__lt=_start_of(until + dt.timedelta(days=1)))
    return qs.order_by("-created_at", "-id")


def audit_actions(*, access: Access) -> list[str]:
    """The distinct actions among the events this person may read, for the filter's choices."""
    qs = access.scope_audit(AuditEvent.objects.all())
    return list(qs.order_by("action").values_list("action", flat=True).distinct())


def team_audit_events(*, access: Access, team_id: int, limit: int = 10) -> list[AuditEvent]:
    if not access.can_view_team_audit(team_id):
        return []
    return list(audit_events(access=access, team_id=team_id)[:limit])


def event_changes(event: AuditEvent) -> list[Change]:
    """Before/after as rows: one per field, in the order the event recorded them."""
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    names = list(dict.fromkeys([*before, *after]))
    return [
        Change(
            field=name.replace("_", " "),
            before=format_value(before[name]) if name in before else EMPTY,
            after=format_value(after[name]) if name in after else EMPTY,
        )
        for name in names
    ]


def with_changes(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Attach `changes` to each event (no queries), for templates."""
    rows = list(events)
    for event in rows:
        event.changes = event_changes(event)  # type: ignore[attr-defined]
    return rows


def format_value(value: Any) -> str:
    if value is None or value == "":
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value) or EMPTY
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else EMPTY
    if isinstance(value, str):
        parsed = _parse_datetime(value)
        if parsed is not None:
            return timezone.localtime(parsed).strftime("%Y-%m-%d %H:%M:%S %Z")
    return str(value)


def _parse_datetime(value: str) -> dt.datetime | None:
    # Audit snapshots store datetimes as ISO strings; only full timestamps are reformatted.
    if len(value) < 19 or value[4] != "-" or value[10] != "T":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if timezone.is_aware(parsed) else None


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
