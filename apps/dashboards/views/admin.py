"""The platform admin's home page: what the platform holds, what waits for a decision, and what broke."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from apps.accounts.permissions import access_for, is_admin, require
from apps.audit.selectors import audit_events, with_changes
from apps.core.charts import render_dashboard
from apps.core.selectors import platform_counts
from apps.endpoints.models import Operation
from apps.endpoints.selectors import pending_counts, reserved_by_team_and_type
from apps.inventory.charts import capacity_chart
from apps.inventory.selectors import capacity_by_gpu_type
from apps.teams.charts import quota_use_chart
from apps.teams.selectors import quota_use

from ..tabs import dashboard_tabs

RECENT_EVENTS = 10
RECENT_FAILURES = 10


def failed_operations(limit: int = RECENT_FAILURES) -> list[Operation]:
    """The latest failed operations with their endpoint, team and cluster. One query (index state, -created_at)."""
    return list(
        Operation.objects.filter(state=Operation.State.FAILED)
        .select_related("endpoint__team", "cluster")
        .order_by("-created_at", "-id")[:limit]
    )


@require(is_admin)
def admin_dashboard(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    reserved = reserved_by_team_and_type()  # one query for both charts
    charts = [quota_use_chart(quota_use(reserved)), capacity_chart(capacity_by_gpu_type(reserved))]
    context = {
        "tabs": dashboard_tabs(access),
        "tab": "admin",
        "counts": platform_counts(),
        "pending": pending_counts(),
        "failures": failed_operations(),
        "recent_events": with_changes(audit_events(access=access)[:RECENT_EVENTS]),
    }
    return render_dashboard(request, "dashboards/admin.html", context, charts, csv_name="platform")
