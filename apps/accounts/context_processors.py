from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .permissions import access_for


def access(request: HttpRequest) -> dict[str, Any]:
    """`access` in every template, so navigation shows only what the role can use."""
    return {"access": access_for(getattr(request, "user", None))}
