"""Assertions the service tests share: a refusal names its field and changes nothing; a no-op writes no event."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.exceptions import ValidationError
from django.db import models

from apps.audit.models import AuditEvent


@contextmanager
def refused(field: str, *models_: type[models.Model]) -> Iterator[pytest.ExceptionInfo[ValidationError]]:
    """The block raises a ValidationError naming `field`, and no row of `models_` nor any audit event changes."""
    counted = (*models_, AuditEvent)
    counts = {m: m.objects.count() for m in counted}
    with pytest.raises(ValidationError) as info:
        yield info
    assert field in info.value.message_dict, info.value
    assert {m: m.objects.count() for m in counted} == counts


@contextmanager
def no_event() -> Iterator[None]:
    count = AuditEvent.objects.count()
    yield
    assert AuditEvent.objects.count() == count
