"""Cost pages: an overview per team, a team's cost page (what its endpoints cost and how fast they answer), and
the monthly statements with finance's actions (generate/regenerate, close, export).

Finance and admins see every team; leads and members see their own teams; another team's costs are a 404.
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.permissions import Access, access_for, require
from apps.core.api import actor_from
from apps.core.forms import add_service_errors
from apps.teams.models import Team

from . import selectors, services
from .forms import BudgetPolicyForm, GenerateForm, MonthFilterForm
from .models import ScrapeTarget, Statement

PAGE_SIZE = 50
GET_POST = require_http_methods(["GET", "POST"])


def has_any_role(access: Access) -> bool:
    return access.has_any_role


def is_finance_or_admin(access: Access) -> bool:
    return access.can_edit_budget()


def _month(request: HttpRequest, default: dt.date) -> tuple[dt.date, MonthFilterForm]:
    """The month asked for in `?month=`, or `default`; a bad value shows next to the field and the default is used."""
    form = MonthFilterForm(request.GET or None, initial={"month": f"{default:%Y-%m}"})
    if "month" in request.GET and form.is_valid():
        return form.cleaned_data["month"], form
    if "month" not in request.GET:
        form = MonthFilterForm(initial={"month": f"{default:%Y-%m}"})
    return default, form


def _team(request: HttpRequest, slug: str) -> Team:
    access = access_for(request.user)
    return get_object_or_404(selectors.visible_teams(access).select_related("budget"), slug=slug)


@require(has_any_role)
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    now = timezone.now()
    this_month = selectors.current_month(now)
    month, form = _month(request, this_month)
    page = Paginator(selectors.visible_teams(access).select_related("budget"), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    teams = list(page.object_list)
    ids = [t.pk for t in teams]
    costs = selectors.month_to_date(ids, month)
    statuses = selectors.budget_statuses(teams, now=now) if month == this_month else {}
    alerts: dict[int, int] = {}
    for alert in selectors.recent_alerts(ids, month=month):
        alerts[alert.team_id] = max(alerts.get(alert.team_id, 0), alert.threshold)
    rows = []
    for team in teams:
        budget = getattr(team, "budget", None)
        team_costs = costs.get(team.pk, {})
        spent = team_costs.get(budget.currency) if budget else None
        rows.append(
            {
                "team": team,
                "costs": sorted(team_costs.items()),
                "budget": budget,
                "used": float(spent / Fraction(budget.monthly_amount))
                if budget and spent and budget.monthly_amount
                else None,
                "status": statuses.get(team.pk),
                "alert": alerts.get(team.pk),
            }
        )
    context = {
        "rows": rows,
        "page_obj": page,
        "month": month,
        "is_current": month == this_month,
        "form": form,
        "time_zone": selectors.statement_zone().key,
        "targets": list(selectors.scrape_targets()) if access.is_admin else [],
        "targets_failing": ScrapeTarget.objects.exclude(last_error="").count() if access.is_admin else 0,
    }
    return render(request, "metering/overview.html", context)


@require(has_any_role)
@require_GET
def team_costs(request: HttpRequest, slug: str) -> HttpResponse:
    access = access_for(request.user)
    team = _team(request, slug)
    now = timezone.now()
    this_month = selectors.current_month(now)
    month, form = _month(request, this_month)
    last = min(selectors.month_last_day(month), now.astimezone(selectors.statement_zone()).date())
    usage = selectors.endpoint_usage(team_ids=[team.pk], start_day=month, end_day=max(last, month))
    totals: dict[str, Any] = {}
    for row in usage:
        for currency, cost in row.costs.items():
            totals[currency] = totals.get(currency, 0) + cost
    context = {
        "team": team,
        "month": month,
        "form": form,
        "is_current": month == this_month,
        "usage": usage,
        "totals": sorted(totals.items()),
        "gpu_hours": sum(row.gpu_seconds for row in usage) / 3600,
        "idle_gpu_hours": sum(row.idle_gpu_seconds for row in usage) / 3600,
        "tokens": sum(row.tokens for row in usage),
        "status": selectors.budget_status(team, now=now) if month == this_month else None,
        "budget": getattr(team, "budget", None),
        "alerts": list(selectors.recent_alerts([team.pk], month=month)),
        "statements": list(selectors.statements_visible(access=access).filter(team=team)[:12]),
        "can_edit_policy": access.can_edit_budget(),
        "time_zone": selectors.statement_zone().key,
        "previous": selectors.previous_month(month),
        "next": selectors.next_month(month) if month < this_month else None,
    }
    return render(request, "metering/team.html", context)


@require(is_finance_or_admin)
@GET_POST
def budget_policy(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug)
    form = BudgetPolicyForm(
        request.POST or None, initial={"block_requests_over_budget": team.block_requests_over_budget}
    )
    back = reverse("metering:team", args=[team.slug])
    if request.method == "POST" and form.is_valid():
        try:
            services.team_budget_policy_set(actor=actor_from(request), team=team, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Budget policy of {team.name} saved.")
            return redirect(back)
    context = {
        "form": form,
        "title": f"Budget policy of {team.name}",
        "submit": "Save policy",
        "cancel_url": back,
        "back_url": back,
        "back_label": f"Costs of {team.name}",
        "intro": "What happens to new endpoint requests while the team is over its monthly budget.",
    }
    return render(request, "includes/form_page.html", context)


@require(has_any_role)
@require_GET
def statement_list(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    default = selectors.previous_month(selectors.current_month())
    month: dt.date | None = None
    form = MonthFilterForm(request.GET or None, initial={"month": f"{default:%Y-%m}"})
    if "month" in request.GET and form.is_valid():
        month = form.cleaned_data["month"]
    elif "month" not in request.GET:
        form = MonthFilterForm(initial={"month": f"{default:%Y-%m}"})
    page = Paginator(selectors.statements_visible(access=access, month=month), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        "page_obj": page,
        "statements": page.object_list,
        "form": form,
        "month": month,
        "export_month": month or default,
        "can_manage": access.can_edit_budget(),
        "time_zone": selectors.statement_zone().key,
    }
    return render(request, "metering/statements.html", context)


def _statement(request: HttpRequest, pk: int) -> Statement:
    access = access_for(request.user)
    return get_object_or_404(selectors.statements_visible(access=access), pk=pk)


@require(has_any_role)
@require_GET
def statement_detail(request: HttpRequest, pk: int) -> HttpResponse:
    statement = _statement(request, pk)
    context = {
        "statement": statement,
        "lines": list(selectors.statement_lines(statement)),
        "can_manage": access_for(request.user).can_edit_budget(),
    }
    return render(request, "metering/statement.html", context)


@require(is_finance_or_admin)
@GET_POST
def statements_generate(request: HttpRequest) -> HttpResponse:
    default = selectors.previous_month(selectors.current_month())
    form = GenerateForm(request.POST or None, initial={"month": request.GET.get("month") or f"{default:%Y-%m}"})
    if request.method == "POST" and form.is_valid():
        try:
            report = services.statements_generate(actor=actor_from(request), month=form.cleaned_data["month"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            month = form.cleaned_data["month"]
            note = (
                f" {len(report.skipped_closed)} closed statement(s) left as they are." if report.skipped_closed else ""
            )
            messages.success(request, f"{len(report.written)} statement(s) for {month:%B %Y} written.{note}")
            return redirect(f"{reverse('metering:statements')}?month={month:%Y-%m}")
    context = {
        "form": form,
        "title": "Generate statements",
        "submit": "Generate statements",
        "cancel_url": reverse("metering:statements"),
        "back_url": reverse("metering:statements"),
        "back_label": "Statements",
        "intro": (
            "Makes one statement per team and currency for a month that has ended, from the metered cost. Open "
            "statements of that month are rewritten; closed ones never change (later corrections become adjustment "
            "lines on the next statement generated)."
        ),
    }
    return render(request, "includes/form_page.html", context)


@require(is_finance_or_admin)
@GET_POST
def statement_close(request: HttpRequest, pk: int) -> HttpResponse:
    statement = _statement(request, pk)
    errors: list[str] = []
    if statement.is_closed and request.method == "GET":
        raise PermissionDenied  # nothing to do: a closed statement has no actions
    if request.method == "POST":
        try:
            services.statement_close(actor=actor_from(request), statement=statement)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Statement {statement} closed.")
            return redirect("metering:statement", pk=statement.pk)
    return render(
        request,
        "includes/confirm.html",
        {
            "title": f"Close statement {statement}",
            "question": f"Close the {statement.month:%B %Y} statement of {statement.team.name} ({statement.currency})?",
            "details": [
                f"Total {statement.total} {statement.currency}, {statement.line_count} line(s).",  # type: ignore[attr-defined]
                "A closed statement never changes again, not even by regenerating the month.",
                "A later correction appears as an adjustment line on the next statement generated for the team.",
            ],
            "errors": errors,
            "confirm_label": "Close statement",
            "cancel_url": reverse("metering:statement", args=[statement.pk]),
            "danger": True,
        },
    )
