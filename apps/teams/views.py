"""Team pages: list, detail, and the forms that change teams, members, quotas and budgets.

Who may do what comes from `apps.accounts.permissions` only. A team the person cannot see is a 404 (its
existence is not confirmed); a team they can see but not change is a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.models import User
from apps.accounts.permissions import Access, access_for, forget_access, is_admin, require, signed_in
from apps.audit.selectors import team_audit_events, with_changes
from apps.core.api import actor_from
from apps.core.forms import add_service_errors
from apps.inventory.models import GpuType

from . import selectors, services
from .forms import BudgetForm, MemberAddForm, MemberRoleForm, QuotaForm, TeamCreateForm, TeamEditForm
from .models import Budget, GpuQuota, Membership, Team

PAGE_SIZE = 50
GET_POST = require_http_methods(["GET", "POST"])


def _team(request: HttpRequest, slug: str, allowed: Callable[[Access, Team], bool] | None = None) -> Team:
    """The team named in the URL if the person may see it (else 404) and, if given, `allowed` passes (else 403)."""
    access = access_for(request.user)
    team = get_object_or_404(selectors.visible_teams(access=access), slug=slug)
    if allowed is not None and not allowed(access, team):
        raise PermissionDenied
    return team


def _may_manage_members(access: Access, team: Team) -> bool:
    return access.can_manage_members(team.pk)


def _form_page(
    request: HttpRequest, form: Any, *, title: str, submit: str, team: Team | None = None, **extra: Any
) -> HttpResponse:
    back_url = reverse("teams:detail", args=[team.slug]) if team is not None else reverse("teams:list")
    context = {
        "form": form,
        "team": team,
        "title": title,
        "submit": submit,
        "cancel_url": back_url,
        "back_url": back_url,
        "back_label": team.name if team is not None else "Teams",
        **extra,
    }
    return render(request, "teams/form.html", context)


def _confirm(request: HttpRequest, **context: Any) -> HttpResponse:
    return render(request, "includes/confirm.html", context)


# --- reading --------------------------------------------------------------------------------------
@require(signed_in)
@require_GET
def team_list(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    page = Paginator(selectors.teams_with_summary(access=access), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "teams/list.html", {"page_obj": page, "teams": page.object_list})


@require(signed_in)
@require_GET
def team_detail(request: HttpRequest, slug: str) -> HttpResponse:
    access = access_for(request.user)
    team = get_object_or_404(selectors.visible_teams(access=access).select_related("budget"), slug=slug)
    context = {
        "team": team,
        "budget": getattr(team, "budget", None),
        "members": selectors.team_members(team=team),
        "quotas": selectors.team_quotas(team=team),
        "can_manage_members": access.can_manage_members(team.pk),
        "can_administer": access.can_administer(),
        "can_edit_budget": access.can_edit_budget(),
        "can_view_team_audit": access.can_view_team_audit(team.pk),
        "events": with_changes(team_audit_events(access=access, team_id=team.pk)),
        "role_choices": Membership.Role.choices,
    }
    return render(request, "teams/detail.html", context)


# --- teams (admin) --------------------------------------------------------------------------------
@require(is_admin)
@GET_POST
def team_create(request: HttpRequest) -> HttpResponse:
    form = TeamCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = services.team_create(actor=actor_from(request), **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Team {team.name} created.")
            return redirect("teams:detail", slug=team.slug)
    return _form_page(request, form, title="New team", submit="Create team")


@require(is_admin)
@GET_POST
def team_edit(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug)
    form = TeamEditForm(request.POST or None, initial={"name": team.name, "cost_center": team.cost_center})
    if request.method == "POST" and form.is_valid():
        try:
            services.team_update(actor=actor_from(request), team=team, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Team updated.")
            return redirect("teams:detail", slug=team.slug)
    return _form_page(request, form, team=team, title=f"Edit {team.name}", submit="Save")


@require(is_admin)
@GET_POST
def team_delete(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.team_delete(actor=actor_from(request), team=team)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Team {team.name} deleted.")
            return redirect("teams:list")
    return _confirm(
        request,
        title=f"Delete {team.name}",
        question=f"Delete the team {team.name} ({team.slug})?",
        details=[
            f"{team.memberships.count()} membership(s), its GPU quotas and its budget are deleted with it.",
            "Its audit events are kept.",
        ],
        errors=errors,
        confirm_label="Delete team",
        cancel_url=reverse("teams:detail", args=[team.slug]),
        danger=True,
    )


# --- members (admin or the team's lead) ---------------------------------------------------------------
@require(signed_in)
@GET_POST
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug, _may_manage_members)
    form = MemberAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        username = form.cleaned_data["user"].strip()
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            form.add_error("user", f"No active user named “{username}”. They need a Pareto account first.")
        else:
            try:
                services.membership_add(actor=actor_from(request), team=team, user=user, role=form.cleaned_data["role"])
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"{user.get_username()} added to {team.name}.")
                return redirect("teams:detail", slug=team.slug)
    return _form_page(request, form, team=team, title=f"Add a member to {team.name}", submit="Add member")


@require(signed_in)
@GET_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    team = _team(request, slug, _may_manage_members)
    membership = get_object_or_404(Membership.objects.select_related("user", "team"), pk=membership_id, team=team)
    form = MemberRoleForm(request.POST or None, initial={"role": membership.role})
    if request.method == "POST" and form.is_valid():
        try:
            services.membership_set_role(
                actor=actor_from(request), membership=membership, role=form.cleaned_data["role"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"{membership.user.get_username()} is now {form.cleaned_data['role']}.")
            forget_access(request.user)
            return redirect("teams:detail", slug=team.slug)
    title = f"Role of {membership.user.get_username()} in {team.name}"
    return _form_page(request, form, team=team, title=title, submit="Save role")


@require(signed_in)
@GET_POST
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    team = _team(request, slug, _may_manage_members)
    membership = get_object_or_404(Membership.objects.select_related("user", "team"), pk=membership_id, team=team)
    username = membership.user.get_username()
    removing_self = membership.user_id == request.user.pk
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.membership_remove(actor=actor_from(request), membership=membership)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"{username} removed from {team.name}.")
            forget_access(request.user)
            if access_for(request.user).can_view_team(team.pk):
                return redirect("teams:detail", slug=team.slug)
            return redirect("teams:list")
    details = ["Their endpoints and history stay with the team."]
    if removing_self:
        details.insert(0, "This is you: you will lose access to this team unless your platform role covers it.")
    return _confirm(
        request,
        title=f"Remove {username}",
        question=f"Remove {username} from {team.name}?",
        details=details,
        errors=errors,
        confirm_label="Remove member",
        cancel_url=reverse("teams:detail", args=[team.slug]),
        danger=True,
    )


# --- quotas (admin) ---------------------------------------------------------------------------------
@require(is_admin)
@GET_POST
def quota_set(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug)
    initial: dict[str, Any] = {}
    wanted = request.GET.get("gpu_type", "")
    chosen = GpuType.objects.filter(pk=int(wanted)).first() if wanted.isdigit() else None
    if chosen is not None:
        initial["gpu_type"] = chosen
        current = GpuQuota.objects.filter(team=team, gpu_type=chosen).first()
        if current is not None:
            initial["limit"] = current.limit
    form = QuotaForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            quota = services.quota_set(actor=actor_from(request), team=team, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Quota for {quota.gpu_type.sku} set to {quota.limit} GPU(s).")
            return redirect("teams:detail", slug=team.slug)
    return _form_page(
        request,
        form,
        team=team,
        title=f"GPU quota for {team.name}",
        submit="Save quota",
        no_gpu_types=not GpuType.objects.exists(),
    )


@require(is_admin)
@GET_POST
def quota_delete(request: HttpRequest, slug: str, quota_id: int) -> HttpResponse:
    team = _team(request, slug)
    quota = get_object_or_404(GpuQuota.objects.select_related("gpu_type", "team"), pk=quota_id, team=team)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.quota_delete(actor=actor_from(request), quota=quota)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Quota for {quota.gpu_type.sku} removed.")
            return redirect("teams:detail", slug=team.slug)
    return _confirm(
        request,
        title="Remove GPU quota",
        question=f"Remove {team.name}'s quota of {quota.limit} x {quota.gpu_type.sku}?",
        details=["Without a quota the team cannot request GPUs of this type."],
        errors=errors,
        confirm_label="Remove quota",
        cancel_url=reverse("teams:detail", args=[team.slug]),
        danger=True,
    )


# --- budget (admin or finance) --------------------------------------------------------------------------
@require(Access.can_edit_budget)
@GET_POST
def budget_set(request: HttpRequest, slug: str) -> HttpResponse:
    team = _team(request, slug)
    budget = Budget.objects.filter(team=team).first()
    form = BudgetForm(request.POST or None, initial=BudgetForm.initial_for(budget))
    if request.method == "POST" and form.is_valid():
        try:
            services.budget_set(actor=actor_from(request), team=team, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Budget for {team.name} saved.")
            return redirect("teams:detail", slug=team.slug)
    return _form_page(request, form, team=team, title=f"Budget for {team.name}", submit="Save budget")
