"""The audit log page: who changed what, scoped by `Access.scope_audit`."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.permissions import access_for, can_view_audit, require
from apps.teams.selectors import audit_teams

from .forms import AuditFilterForm
from .models import AuditEvent
from .selectors import audit_actions, audit_events, with_changes

PAGE_SIZE = 50


@require(can_view_audit)
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    form = AuditFilterForm(request.GET, actions=audit_actions(access=access), teams=audit_teams(access=access))
    events: list[AuditEvent] = []
    page = None
    if form.is_valid():
        data = form.cleaned_data
        qs = audit_events(
            access=access,
            action=data["action"],
            team_id=data["team"].pk if data["team"] else None,
            actor=data["actor"].strip(),
            since=data["since"],
            until=data["until"],
        )
        page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
        events = with_changes(page.object_list)
    return render(request, "audit/list.html", {"form": form, "events": events, "page_obj": page})
