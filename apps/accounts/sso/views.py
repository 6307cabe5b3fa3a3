"""Single sign-on pages: start the sign-in, the callback, sign-out, and the admin pages for group mappings."""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.identity import InactiveUser
from apps.accounts.models import GroupTeamMapping
from apps.accounts.permissions import access_for, is_admin, require
from apps.accounts.selectors import platform_admins
from apps.core.api import actor_from, client_ip
from apps.core.forms import add_service_errors

from . import client, services
from .config import SsoConfig, auth_modes, entra_enabled
from .forms import GroupMappingForm
from .selectors import group_mappings
from .tokens import TokenRejected

log = logging.getLogger(__name__)

# Session keys. Pending flows are keyed by their state, so two tabs signing in at once both work.
PENDING_FLOWS = "pareto_sso_flows"
SIGNED_IN_WITH_SSO = "pareto_sso"
FLOW_MAX_AGE_SECONDS = 600
MAX_PENDING_FLOWS = 5

# What a person reads when a sign-in is refused, by reason code (the audit event has the technical detail).
EXPLANATIONS = {
    "state": "This sign-in response does not belong to a sign-in started in this browser: it was forged, "
    "used a second time, or the sign-in took longer than 10 minutes.",
    "code_rejected": "The identity provider refused the sign-in code: it was already used or has expired.",
    "nonce": "The identity token does not belong to the sign-in this browser started (its nonce differs).",
    "signature": "The identity token is not signed by your organisation's identity provider.",
    "unknown_key": "The identity token is signed with a key your organisation's identity provider does not publish.",
    "algorithm": "The identity token is signed in a way Pareto does not accept.",
    "expired": "The identity token has expired. If this keeps happening, the clock of this server or of the "
    "identity provider is wrong.",
    "not_yet_valid": "The identity token is not valid yet. The clock of this server or of the identity provider is "
    "wrong.",
    "audience": "The identity token was issued for another application, not for Pareto.",
    "issuer": "The identity token was issued by another identity provider than the one Pareto trusts.",
    "tenant": "Your account belongs to another organisation (Entra ID tenant) than the one Pareto is set up for.",
    "malformed": "The identity provider's answer is incomplete or malformed.",
    "provider_refused": "The identity provider did not sign you in (the sign-in was cancelled or refused).",
    "provider_error": "The identity provider reported an error.",
    "user_deactivated": "Your Pareto account has been deactivated. Ask a Pareto admin to reactivate it.",
}


# --- helpers ----------------------------------------------------------------------------------------------
def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return ""


def _remember_flow(session: SessionBase, flow: dict[str, Any], next_url: str) -> None:
    now = time.time()
    pending = {
        state: entry
        for state, entry in session.get(PENDING_FLOWS, {}).items()
        if now - entry.get("started", 0) < FLOW_MAX_AGE_SECONDS
    }
    pending[flow["state"]] = {"flow": flow, "next": next_url, "started": now}
    # Only the newest few: an abandoned sign-in never grows the session without bound.
    newest = sorted(pending.items(), key=lambda item: item[1]["started"])[-MAX_PENDING_FLOWS:]
    session[PENDING_FLOWS] = dict(newest)


def _take_flow(session: SessionBase, state: str) -> dict[str, Any] | None:
    """The pending flow of this state, removed from the session: a response is good for one sign-in only."""
    pending = dict(session.get(PENDING_FLOWS, {}))
    entry = pending.pop(state, None) if state else None
    if entry is not None:
        session[PENDING_FLOWS] = pending
        if time.time() - entry.get("started", 0) >= FLOW_MAX_AGE_SECONDS:
            return None
    return entry


def _error_page(request: HttpRequest, *, title: str, explanation: str, status: int, **extra: Any) -> HttpResponse:
    context = {
        "title": title,
        "explanation": explanation,
        "login_url": reverse("accounts:login"),
        "local_enabled": "local" in auth_modes(),
        **extra,
    }
    return render(request, "accounts/sso_error.html", context, status=status)


def _refuse(
    request: HttpRequest, *, reason: str, detail: str, claims: dict[str, Any] | None = None, status: int = 400
) -> HttpResponse:
    """A refused sign-in: audit it, leave no half-made session behind, and tell the person what happened."""
    event = services.sso_rejection_record(reason=reason, detail=detail, source_ip=client_ip(request), claims=claims)
    if not request.user.is_authenticated:
        request.session.flush()
    extra: dict[str, Any] = {"reference": event.pk, "reason": reason}
    if reason == "user_deactivated":
        extra["admins"] = list(platform_admins())
    if reason in ("provider_refused", "provider_error"):
        extra["provider_detail"] = detail
    return _error_page(
        request,
        title="Sign-in with Microsoft failed",
        explanation=EXPLANATIONS.get(reason, EXPLANATIONS["malformed"]),
        status=status,
        **extra,
    )


def _unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.error("single sign-on unavailable: %s", exc)
    return _error_page(
        request,
        title="Sign-in with Microsoft is not available right now",
        explanation="Pareto could not reach the identity provider, or its single sign-on settings are incomplete. "
        "Try again in a few minutes; if it goes on, tell whoever runs Pareto (the server log has the details).",
        status=503,
    )


# --- sign-in and sign-out ----------------------------------------------------------------------------------
@never_cache
@require_GET
def sso_login(request: HttpRequest) -> HttpResponse:
    """Start the authorization code flow: remember it in the session and send the browser to the provider."""
    if not entra_enabled():
        raise Http404("Single sign-on is not enabled.")
    config = SsoConfig.from_settings()
    redirect_uri = config.redirect_uri or request.build_absolute_uri(reverse("accounts:sso_callback"))
    try:
        flow = client.flow_begin(config, redirect_uri=redirect_uri)
    except client.SsoUnavailable as exc:
        return _unavailable(request, exc)
    _remember_flow(request.session, flow, _safe_next(request, request.GET.get("next")))
    return redirect(flow["auth_uri"])


@never_cache
@require_GET
def sso_callback(request: HttpRequest) -> HttpResponse:
    """The provider sends the browser back here with a code (or an error) and the state of the flow."""
    if not entra_enabled():
        raise Http404("Single sign-on is not enabled.")
    config = SsoConfig.from_settings()
    auth_response = request.GET.dict()
    pending = _take_flow(request.session, auth_response.get("state", ""))
    if pending is None:
        return _refuse(
            request,
            reason="state",
            detail=f"no pending sign-in with state {auth_response.get('state', '')[:64]!r} in this session",
        )
    try:
        result = services.sso_sign_in(
            config=config, flow=pending["flow"], auth_response=auth_response, source_ip=client_ip(request)
        )
    except client.FlowRejected as exc:
        return _refuse(request, reason=exc.reason, detail=exc.detail)
    except TokenRejected as exc:
        return _refuse(request, reason=exc.reason, detail=exc.detail, claims=exc.claims)
    except InactiveUser as exc:
        return _refuse(request, reason="user_deactivated", detail=f"user {exc.user.pk} is deactivated", status=403)
    except client.SsoUnavailable as exc:
        return _unavailable(request, exc)

    # Django's login() gives the session a new key (no fixation) and keeps the other pending flows.
    auth_login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[SIGNED_IN_WITH_SSO] = True
    if result.groups_error:
        messages.warning(
            request,
            "Your team memberships could not be updated: you are in more groups than a token can list, and "
            f"Microsoft Graph did not give them ({result.groups_error}). Pareto kept the teams from your previous "
            "sign-in; sign in again later to refresh them.",
        )
    elif not access_for(result.user).has_any_role:
        messages.info(
            request,
            "You signed in with Microsoft, but your account has no Pareto app role and none of your groups is "
            "mapped to a team.",
        )
    return redirect(pending["next"] or resolve_url(settings.LOGIN_REDIRECT_URL))


@require_POST
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out here; a single sign-on session also goes on to the provider's sign-out page."""
    from_sso = bool(request.session.get(SIGNED_IN_WITH_SSO))
    auth_logout(request)  # flushes the session
    login_url = reverse("accounts:login")
    if from_sso and entra_enabled():
        end_session = client.end_session_url(
            SsoConfig.from_settings(), post_logout_redirect_uri=request.build_absolute_uri(login_url)
        )
        if end_session:
            return redirect(end_session)
    return redirect(login_url)


# --- group -> team mappings (admins) -------------------------------------------------------------------------
@require(is_admin)
@require_GET
def group_mapping_list(request: HttpRequest) -> HttpResponse:
    config = SsoConfig.from_settings()
    context = {
        "mappings": list(group_mappings()),
        "modes": auth_modes(),
        "entra": entra_enabled(),
        "config": config,
        "admin_roles": sorted(config.admin_roles),
        "finance_roles": sorted(config.finance_roles),
    }
    return render(request, "accounts/group_mappings.html", context)


def _mapping_form_page(request: HttpRequest, form: GroupMappingForm, *, title: str, submit: str) -> HttpResponse:
    url = reverse("accounts:group_mappings")
    context = {
        "form": form,
        "title": title,
        "submit": submit,
        "cancel_url": url,
        "back_url": url,
        "back_label": "Single sign-on groups",
        "intro": "Changes apply at each person's next sign-in with Microsoft.",
    }
    return render(request, "includes/form_page.html", context)


@require(is_admin)
@require_http_methods(["GET", "POST"])
def group_mapping_create(request: HttpRequest) -> HttpResponse:
    form = GroupMappingForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            mapping = services.group_mapping_create(actor=actor_from(request), **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Members of {mapping.label or mapping.group_id} now join {mapping.team}.")
            return redirect("accounts:group_mappings")
    return _mapping_form_page(request, form, title="Map a group to a team", submit="Add mapping")


@require(is_admin)
@require_http_methods(["GET", "POST"])
def group_mapping_edit(request: HttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(GroupTeamMapping.objects.select_related("team"), pk=pk)
    initial = {"group_id": mapping.group_id, "label": mapping.label, "team": mapping.team, "role": mapping.role}
    form = GroupMappingForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.group_mapping_update(actor=actor_from(request), mapping=mapping, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Saved the mapping.")
            return redirect("accounts:group_mappings")
    return _mapping_form_page(request, form, title=f"Edit mapping {mapping.label or mapping.group_id}", submit="Save")


@require(is_admin)
@require_http_methods(["GET", "POST"])
def group_mapping_delete(request: HttpRequest, pk: int) -> HttpResponse:
    mapping = get_object_or_404(GroupTeamMapping.objects.select_related("team"), pk=pk)
    if request.method == "POST":
        services.group_mapping_delete(actor=actor_from(request), mapping=mapping)
        messages.success(request, f"Deleted the mapping of {mapping.label or mapping.group_id} to {mapping.team}.")
        return redirect("accounts:group_mappings")
    return render(
        request,
        "includes/confirm.html",
        {
            "title": "Delete group mapping",
            "question": f"Stop giving members of {mapping.label or mapping.group_id} the role "
            f"{mapping.get_role_display().lower()} in {mapping.team}?",
            "details": [
                "At their next sign-in with Microsoft, people who were in the team only through this group leave it.",
                "Members added by hand in the portal stay.",
            ],
            "confirm_label": "Delete mapping",
            "cancel_url": reverse("accounts:group_mappings"),
            "danger": True,
        },
    )
