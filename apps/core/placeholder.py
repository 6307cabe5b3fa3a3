"""Temporary placeholder page used while a section is being built. Delete when no urls.py uses it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from apps.accounts.permissions import require, signed_in


@require(signed_in)
def placeholder(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    return HttpResponse("This page is being built.")
