from __future__ import annotations

from typing import Any

from django.db import connection
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.accounts.permissions import access_for

from .models import Endpoint, QuotaRequest


def _pending_counts() -> dict[str, int]:
    # One query for both counts: this runs on every page an admin opens.
    endpoints, quota_requests = Endpoint._meta.db_table, QuotaRequest._meta.db_table
    sql = (
        f"SELECT (SELECT COUNT(*) FROM {endpoints} WHERE state = %s), "  # noqa: S608 - table names from the models
        f"(SELECT COUNT(*) FROM {quota_requests} WHERE state = %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Endpoint.State.PENDING_APPROVAL, QuotaRequest.State.PENDING])
        row = cursor.fetchone()
    return {"endpoints": row[0], "quota_requests": row[1], "total": row[0] + row[1]}


def approvals(request: HttpRequest) -> dict[str, Any]:
    """`approvals.total` (and `.endpoints`, `.quota_requests`) for admins' navigation; counted only when shown."""
    if not access_for(getattr(request, "user", None)).is_admin:
        return {}
    return {"approvals": SimpleLazyObject(_pending_counts)}
