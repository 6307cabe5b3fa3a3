"""Endpoint pages: the list, the request form with its live estimate, the detail page with live status, changes,
"Try it", the admins' approval queue, and quota requests.

Who may do what comes from `apps.accounts.permissions` only. An endpoint of a team the person cannot see is a 404
(its existence is not confirmed); one they can see but not change is a 403.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.permissions import Access, access_for, can_request_some_endpoint, is_admin, require, signed_in
from apps.catalog.models import CatalogModel
from apps.core.api import actor_from
from apps.core.forms import add_service_errors
from apps.inventory.models import Cluster, GpuType
from apps.teams.models import GpuQuota, Team

from . import selectors, services, tryit
from .forms import (
    EndpointChangeForm,
    EndpointFilterForm,
    EndpointRequestForm,
    EstimateForm,
    QuotaRequestFilterForm,
    QuotaRequestForm,
    ReasonForm,
    TryForm,
    requestable_teams,
)
from .models import Endpoint, QuotaRequest
from .selectors import RESERVATION, CostEstimate, QuotaFit

PAGE_SIZE = 50
QUEUE_LIMIT = 100  # the oldest requests first; a longer queue says how many more there are
GET_POST = require_http_methods(["GET", "POST"])
# While an endpoint is in one of these states its status fragment polls; once it settles the page reloads.
POLLING = (Endpoint.State.APPROVED, *Endpoint.IN_TRANSIT)


# --- helpers --------------------------------------------------------------------------------------
def _endpoint(request: HttpRequest, pk: int, allowed: Callable[[Access, int], bool] | None = None) -> Endpoint:
    """The endpoint if the person may see it (else 404) and, if given, `allowed(access, team_id)` (else 403)."""
    access = access_for(request.user)
    endpoint = get_object_or_404(selectors.endpoints_visible(access=access), pk=pk)
    if allowed is not None and not allowed(access, endpoint.team_id):
        raise PermissionDenied
    return endpoint


def _next_url(request: HttpRequest, default: str) -> str:
    """Where to go after a POST from a list: `next` if it points at this site, else `default`."""
    url = request.POST.get("next") or request.GET.get("next") or ""
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=False):
        return url
    return default


def _requestable_team(access: Access, slug: str | None) -> Team | None:
    """The team named by `?team=` if the person may request for it; their only team if they lead just one."""
    teams = requestable_teams(access)
    if slug:
        return teams.filter(slug=slug).first()
    only = list(teams[:2])
    return only[0] if len(only) == 1 else None


def _quota_numbers(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], tuple[int, int]]:
    """(team id, GPU type id) -> (quota limit, GPUs reserved), for many pairs in two queries."""
    pairs = set(pairs)
    if not pairs:
        return {}
    team_ids, gpu_ids = {t for t, _ in pairs}, {g for _, g in pairs}
    limits = {
        (team_id, gpu_id): limit
        for team_id, gpu_id, limit in GpuQuota.objects.filter(
            team_id__in=team_ids, gpu_type_id__in=gpu_ids
        ).values_list("team_id", "gpu_type_id", "limit")
    }
    reserved = {
        (row["team_id"], row["gpu_type_id"]): row["total"]
        for row in Endpoint.objects.filter(team_id__in=team_ids, gpu_type_id__in=gpu_ids, state__in=Endpoint.RESERVING)
        .order_by()
        .values("team_id", "gpu_type_id")
        .annotate(total=Coalesce(Sum(RESERVATION), 0))
    }
    return {pair: (limits.get(pair, 0), reserved.get(pair, 0)) for pair in pairs}


def _confirm(request: HttpRequest, *, errors: list[str], **context: Any) -> HttpResponse:
    """The shared confirmation page; with errors (the service refused) it answers 409 and says why."""
    return render(request, "includes/confirm.html", {"errors": errors, **context}, status=409 if errors else 200)


# --- estimate -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """What a request would reserve, cost and how it would be decided, for the numbers chosen so far."""

    missing: tuple[str, ...] = ()
    team: Team | None = None
    gpu_type: GpuType | None = None
    cluster: Cluster | None = None
    gpus_per_replica: int = 0
    max_replicas: int = 0
    fit: QuotaFit | None = None
    capacity: int | None = None
    cost: CostEstimate | None = None
    outcome: str = ""  # "approved", "review", "over_quota" or "refused"
    reason: str = ""

    @property
    def needed(self) -> int:
        return self.gpus_per_replica * self.max_replicas


def estimate_for(form: EstimateForm) -> Estimate:
    form.is_valid()  # every field is optional: use whatever parsed
    data = getattr(form, "cleaned_data", {})
    team: Team | None = data.get("team")
    model: CatalogModel | None = data.get("model")
    cluster: Cluster | None = data.get("cluster")
    gpu_type: GpuType | None = data.get("gpu_type") or (model.recommended_gpu_type if model else None)
    per_replica = data.get("gpus_per_replica") or (model.recommended_gpu_count if model else 1)
    replicas = data.get("max_replicas") or 1
    missing = [label for label, value in (("a team", team), ("a model", model), ("a GPU type", gpu_type)) if not value]
    if per_replica < 1 or replicas < 1:
        missing.append("at least one GPU per replica and one replica")
    if len(missing) > 1:
        missing[-2:] = [f"{missing[-2]} and {missing[-1]}"]
    if missing or team is None or gpu_type is None:
        return Estimate(missing=tuple(missing))
    needed = per_replica * replicas
    fit = selectors.quota_fit(team=team, gpu_type=gpu_type, needed=needed)
    capacity = selectors.cluster_capacity(cluster_id=cluster.pk, gpu_type=gpu_type) if cluster else None
    if capacity is not None and cluster is not None and needed > capacity:
        outcome = "refused"
        reason = f"Cluster {cluster.name} has {capacity} {gpu_type.sku} in all; this endpoint needs {needed}."
    elif fit.fits and team.approval_policy == Team.ApprovalPolicy.AUTO:
        outcome, reason = "approved", "It fits the team's free quota."
    elif fit.fits:
        outcome = "review"
        reason = "It fits the free quota, but the team's policy is that an admin reviews every request."
    else:
        outcome = "over_quota"
        reason = (
            f"Over quota by {needed - fit.free}. Approving it would raise the team's "
            f"{gpu_type.sku} quota from {fit.limit} to {fit.reserved + needed}; or ask for more quota first."
        )
    return Estimate(
        team=team,
        gpu_type=gpu_type,
        cluster=cluster,
        gpus_per_replica=per_replica,
        max_replicas=replicas,
        fit=fit,
        capacity=capacity,
        cost=selectors.cost_estimate(gpu_type=gpu_type, gpus=needed),
        outcome=outcome,
        reason=reason,
    )


# --- reading --------------------------------------------------------------------------------------
@require(signed_in)
@require_GET
def endpoint_list(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    teams = list(access.scope(Team.objects.order_by("name"), "id"))
    filter_form = EndpointFilterForm(request.GET or None, teams=teams)
    filters = filter_form.filters()
    endpoints = selectors.endpoints_visible(access=access).order_by("team__slug", "name", "-created_at")
    endpoints = endpoints.filter(state=filters["state"]) if filters["state"] else selectors.live(endpoints)
    if filters["team"]:
        endpoints = endpoints.filter(team__slug=filters["team"])
    page = Paginator(endpoints, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "endpoints/list.html",
        {
            "filter_form": filter_form,
            "filtered": any(filters.values()),
            "page_obj": page,
            "endpoints": page.object_list,
            "can_request": can_request_some_endpoint(access),
        },
    )


def _detail_context(request: HttpRequest, endpoint: Endpoint) -> dict[str, Any]:
    access = access_for(request.user)
    state = endpoint.state
    can_manage = access.can_request_endpoints(endpoint.team_id)
    return {
        "endpoint": endpoint,
        "operations": selectors.endpoint_operations(endpoint=endpoint),
        "polling": state in POLLING,
        "can_change": can_manage and state == Endpoint.State.READY,
        "can_delete": can_manage and state not in (*Endpoint.FINAL, Endpoint.State.DELETING),
        "can_retry": can_manage and state == Endpoint.State.FAILED,
        "can_decide": access.is_admin and state == Endpoint.State.PENDING_APPROVAL,
        "can_try": access.can_use_endpoints(endpoint.team_id) and state == Endpoint.State.READY,
    }


@require(signed_in)
@require_GET
def endpoint_detail(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    context = _detail_context(request, endpoint)
    context.update(
        engine_args=json.dumps(endpoint.engine_args, indent=2, sort_keys=True),
        try_form=TryForm(),
        reject_form=ReasonForm(),
    )
    return render(request, "endpoints/detail.html", context)


@require(signed_in)
@require_GET
def endpoint_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The live part of the detail page: state, message, URL and operations. htmx polls it while in transit."""
    endpoint = _endpoint(request, pk)
    context = _detail_context(request, endpoint)
    response = render(request, "endpoints/_status.html", context)
    if request.headers.get("HX-Request") and not context["polling"]:
        # Settled: reload the whole page once, so the actions match the new state; it then stops polling.
        response["HX-Refresh"] = "true"
    return response


# --- requesting -----------------------------------------------------------------------------------
@require(can_request_some_endpoint)
@GET_POST
def endpoint_request(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    team = _requestable_team(access, request.GET.get("team"))
    form = EndpointRequestForm(request.POST or None, access=access, initial={"team": team})
    if request.method == "POST" and form.is_valid():
        try:
            endpoint = services.endpoint_request(actor=actor_from(request), **form.service_kwargs())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Requested {endpoint}. {endpoint.state_message}")
            return redirect("endpoints:detail", pk=endpoint.pk)
    if request.method == "POST":
        estimate_data: Any = request.POST
    else:
        estimate_data = {"team": team.pk if team else "", "min_replicas": 1, "max_replicas": 1}
    return render(
        request,
        "endpoints/request.html",
        {
            "form": form,
            "estimate": estimate_for(EstimateForm(estimate_data, access=access)),
            "no_models": not CatalogModel.objects.filter(status=CatalogModel.Status.APPROVED).exists(),
            "no_clusters": not Cluster.objects.exists(),
        },
    )


@require(can_request_some_endpoint)
@require_GET
def endpoint_estimate(request: HttpRequest) -> HttpResponse:
    """The request form's estimate, re-rendered by htmx whenever an input changes."""
    form = EstimateForm(request.GET, access=access_for(request.user))
    return render(request, "endpoints/_estimate.html", {"estimate": estimate_for(form)})


# --- changing (admin or the team's lead) -----------------------------------------------------------
@require(signed_in)
@GET_POST
def endpoint_change(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk, Access.can_request_endpoints)
    form = EndpointChangeForm(request.POST or None, initial=EndpointChangeForm.initial_for(endpoint))
    if request.method == "POST" and form.is_valid():
        try:
            updated = services.endpoint_update(actor=actor_from(request), endpoint=endpoint, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if updated.generation == endpoint.generation:
                messages.info(request, "Nothing changed.")
            else:
                messages.success(request, f"Rolling out the change to {updated}.")
            return redirect("endpoints:detail", pk=endpoint.pk)
    url = reverse("endpoints:detail", args=[endpoint.pk])
    return render(
        request,
        "endpoints/change.html",
        {
            "form": form,
            "endpoint": endpoint,
            "title": f"Change {endpoint}",
            "submit": "Roll out the change",
            "cancel_url": url,
            "back_url": url,
            "back_label": str(endpoint),
        },
    )


@require(signed_in)
@GET_POST
def endpoint_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk, Access.can_request_endpoints)
    errors: list[str] = []
    if request.method == "POST":
        try:
            endpoint = services.endpoint_delete(actor=actor_from(request), endpoint=endpoint)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"{endpoint}: {endpoint.state_message}")
            return redirect("endpoints:detail", pk=endpoint.pk)
    if endpoint.state == Endpoint.State.PENDING_APPROVAL:
        question, details = f"Withdraw the request for {endpoint}?", ["Nothing is on the cluster yet."]
    else:
        question = f"Delete the endpoint {endpoint}?"
        details = [
            f"Its application is removed from cluster {endpoint.cluster.name}; clients using "
            f"{endpoint.base_url or 'its URL'} get errors from then on.",
            f"Its {endpoint.reserved_gpus} {endpoint.gpu_type.sku} stay reserved until the cluster confirms removal.",
        ]
    return _confirm(
        request,
        errors=errors,
        title=f"Delete {endpoint}",
        question=question,
        details=details,
        confirm_label="Delete endpoint",
        cancel_url=reverse("endpoints:detail", args=[endpoint.pk]),
        danger=True,
    )


@require(signed_in)
@require_POST
def endpoint_retry(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk, Access.can_request_endpoints)
    try:
        services.endpoint_retry(actor=actor_from(request), endpoint=endpoint)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Trying {endpoint} again.")
    return redirect("endpoints:detail", pk=endpoint.pk)


# --- "Try it" -------------------------------------------------------------------------------------
@require(signed_in)
@GET_POST
def endpoint_try(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk, Access.can_use_endpoints)
    form = TryForm(request.POST or None)
    result = None
    if request.method == "POST" and form.is_valid():
        try:
            result = tryit.endpoint_try(endpoint=endpoint, prompt=form.cleaned_data["prompt"])
        except ValidationError as exc:
            add_service_errors(form, exc)
    context = {"endpoint": endpoint, "try_form": form, "result": result}
    template = "endpoints/_try.html" if request.headers.get("HX-Request") else "endpoints/try.html"
    return render(request, template, context)


# --- approvals (admins) ---------------------------------------------------------------------------
@require(is_admin)
@require_POST
def endpoint_approve(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    try:
        endpoint = services.endpoint_approve(actor=actor_from(request), endpoint=endpoint)
    except ValidationError as exc:
        messages.error(request, f"{endpoint}: {' '.join(exc.messages)}")
    else:
        messages.success(request, f"{endpoint}: {endpoint.state_message}")
    return redirect(_next_url(request, reverse("endpoints:detail", args=[endpoint.pk])))


@require(is_admin)
@GET_POST
def endpoint_reject(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    form = ReasonForm(request.POST or None, initial={"next": _next_url(request, "")})
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_reject(actor=actor_from(request), endpoint=endpoint, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Rejected {endpoint}.")
            return redirect(_next_url(request, reverse("endpoints:queue")))
    url = reverse("endpoints:detail", args=[endpoint.pk])
    return render(
        request,
        "includes/form_page.html",
        {
            "form": form,
            "title": f"Reject {endpoint}",
            "intro": f"{endpoint.team.name} asked for {endpoint.reserved_gpus} {endpoint.gpu_type.sku} to serve "
            f"{endpoint.model.name}. {endpoint.state_message}",
            "submit": "Reject request",
            "cancel_url": url,
            "back_url": url,
            "back_label": str(endpoint),
        },
    )


@require(is_admin)
@require_GET
def approval_queue(request: HttpRequest) -> HttpResponse:
    endpoints_qs, quota_qs = selectors.approval_queue()
    endpoints, quota_requests = list(endpoints_qs[:QUEUE_LIMIT]), list(quota_qs[:QUEUE_LIMIT])
    # Only a full page needs its own count; a shorter one is the whole queue.
    counts = {
        "endpoints": len(endpoints) if len(endpoints) < QUEUE_LIMIT else endpoints_qs.count(),
        "quota_requests": len(quota_requests) if len(quota_requests) < QUEUE_LIMIT else quota_qs.count(),
    }
    numbers = _quota_numbers(
        [(e.team_id, e.gpu_type_id) for e in endpoints] + [(q.team_id, q.gpu_type_id) for q in quota_requests]
    )
    endpoint_rows = []
    for endpoint in endpoints:
        limit, reserved = numbers[(endpoint.team_id, endpoint.gpu_type_id)]
        fit = QuotaFit(gpu_type=endpoint.gpu_type, needed=endpoint.reserved_gpus, limit=limit, reserved=reserved)
        endpoint_rows.append((endpoint, fit))
    quota_rows = [(q, *numbers[(q.team_id, q.gpu_type_id)]) for q in quota_requests]
    return render(
        request,
        "endpoints/queue.html",
        {
            "counts": counts,
            "endpoint_rows": endpoint_rows,
            "quota_rows": quota_rows,
            "reason_form": ReasonForm(),
            "limit": QUEUE_LIMIT,
        },
    )


# --- quota requests -------------------------------------------------------------------------------
@require(signed_in)
@require_GET
def quota_request_list(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    filter_form = QuotaRequestFilterForm(request.GET or None)
    filters = filter_form.filters()
    rows = access.scope(
        QuotaRequest.objects.select_related("team", "gpu_type", "requested_by", "decided_by").order_by("-created_at")
    )
    if filters["state"]:
        rows = rows.filter(state=filters["state"])
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    numbers = _quota_numbers((q.team_id, q.gpu_type_id) for q in page.object_list)
    return render(
        request,
        "endpoints/quota_requests.html",
        {
            "filter_form": filter_form,
            "filtered": any(filters.values()),
            "page_obj": page,
            "rows": [(q, numbers[(q.team_id, q.gpu_type_id)][0]) for q in page.object_list],
            "can_request": can_request_some_endpoint(access),
            "reason_form": ReasonForm(),
        },
    )


@require(can_request_some_endpoint)
@GET_POST
def quota_request_new(request: HttpRequest) -> HttpResponse:
    access = access_for(request.user)
    team = _requestable_team(access, request.GET.get("team"))
    wanted = request.GET.get("gpu_type", "")
    gpu_type = GpuType.objects.filter(pk=int(wanted)).first() if wanted.isdigit() else None
    form = QuotaRequestForm(request.POST or None, access=access, initial={"team": team, "gpu_type": gpu_type})
    if request.method == "POST" and form.is_valid():
        try:
            quota_request = services.quota_request_create(actor=actor_from(request), **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(
                request,
                f"Asked for {quota_request.requested_limit} x {quota_request.gpu_type.sku} for "
                f"{quota_request.team.name}; an admin decides.",
            )
            return redirect("endpoints:quota_requests")
    if form.is_bound:
        team = getattr(form, "cleaned_data", {}).get("team") or team
    url = reverse("endpoints:quota_requests")
    return render(
        request,
        "endpoints/quota_request_form.html",
        {
            "form": form,
            "team": team,
            "reservations": selectors.team_reservations(team=team) if team else [],
            "title": "Ask for more GPU quota",
            "submit": "Send request",
            "cancel_url": url,
            "back_url": url,
            "back_label": "Quota requests",
        },
    )


@require(is_admin)
@require_POST
def quota_request_approve(request: HttpRequest, pk: int) -> HttpResponse:
    quota_request = get_object_or_404(QuotaRequest.objects.select_related("team", "gpu_type"), pk=pk)
    try:
        services.quota_request_approve(actor=actor_from(request), request=quota_request)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(
            request,
            f"{quota_request.team.name} may now use {quota_request.requested_limit} x {quota_request.gpu_type.sku}.",
        )
    return redirect(_next_url(request, reverse("endpoints:quota_requests")))


@require(is_admin)
@GET_POST
def quota_request_deny(request: HttpRequest, pk: int) -> HttpResponse:
    quota_request = get_object_or_404(QuotaRequest.objects.select_related("team", "gpu_type"), pk=pk)
    form = ReasonForm(request.POST or None, initial={"next": _next_url(request, "")})
    if request.method == "POST" and form.is_valid():
        try:
            services.quota_request_deny(
                actor=actor_from(request), request=quota_request, reason=form.cleaned_data["reason"]
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Denied {quota_request.team.name}'s request.")
            return redirect(_next_url(request, reverse("endpoints:quota_requests")))
    url = reverse("endpoints:quota_requests")
    return render(
        request,
        "includes/form_page.html",
        {
            "form": form,
            "title": f"Deny {quota_request.team.name}'s quota request",
            "intro": f"{quota_request.team.name} asks for {quota_request.requested_limit} x "
            f"{quota_request.gpu_type.sku}: “{quota_request.justification}”",
            "submit": "Deny request",
            "cancel_url": url,
            "back_url": url,
            "back_label": "Quota requests",
        },
    )
