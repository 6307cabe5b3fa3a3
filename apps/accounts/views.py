"""Account pages: sign-in (Django's LoginView with our template) and personal API tokens."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.core.api import actor_from
from apps.core.forms import add_service_errors

from .forms import ApiTokenCreateForm
from .models import ApiToken, User
from .permissions import require, signed_in
from .selectors import api_tokens_of
from .services import api_token_create, api_token_revoke
from .sso.config import entra_enabled, local_enabled


class LoginView(auth_views.LoginView):
    """The sign-in page shows what PARETO_AUTH_MODES enables: local accounts, "Sign in with Microsoft", or both."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # The template shows the "Sign in with Microsoft" button only when this is set.
        context.setdefault("sso_login_url", reverse("accounts:sso_login") if entra_enabled() else None)
        context["local_enabled"] = local_enabled()
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not local_enabled():
            # Local sign-in is off: no password is even checked (the form stays unbound).
            context = self.get_context_data(form=self.form_class(request=request))
            context["local_refused"] = True
            return self.render_to_response(context, status=403)
        return super().post(request, *args, **kwargs)


@never_cache  # the response to a POST carries the raw token: never keep it in a cache
@require(signed_in)
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    me = cast(User, request.user)  # `require(signed_in)` let only a signed-in person through
    form = ApiTokenCreateForm(request.POST or None)
    created: ApiToken | None = None
    raw_token = ""
    if request.method == "POST" and form.is_valid():
        try:
            created, raw_token = api_token_create(actor=actor_from(request), user=me, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            form = ApiTokenCreateForm()
    context = {
        "form": form,
        "tokens": api_tokens_of(user=me),
        "created": created,
        "raw_token": raw_token,
    }
    return render(request, "accounts/tokens.html", context)


@require(signed_in)
@require_http_methods(["GET", "POST"])
def api_token_revoke_view(request: HttpRequest, token_id: int) -> HttpResponse:
    # Only the person's own tokens exist here: someone else's id is a 404, as if it did not exist.
    token = get_object_or_404(api_tokens_of(user=cast(User, request.user)), pk=token_id)
    if request.method == "POST":
        api_token_revoke(actor=actor_from(request), token=token)
        messages.success(request, f"Token “{token.name}” revoked. Anything using it can no longer sign in.")
        return redirect("accounts:tokens")
    return render(
        request,
        "includes/confirm.html",
        {
            "title": "Revoke API token",
            "question": f"Revoke the token “{token.name}” ({token.hint}…)?",
            "details": ["Scripts using it stop working at once. This cannot be undone; you can create a new token."],
            "confirm_label": "Revoke token",
            "cancel_url": reverse("accounts:tokens"),
            "danger": True,
        },
    )
