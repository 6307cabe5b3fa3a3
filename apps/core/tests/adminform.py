"""Test helpers for Django admin pages: submit an add/change page the way a browser would."""

from __future__ import annotations

from typing import Any

from django import forms
from django.test import Client

from apps.accounts.models import User
from apps.accounts.tests.factories import UserFactory


def superuser() -> User:
    """Who runs the Django admin: staff with every permission (and so a platform admin for `access_for`)."""
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def _add_form(data: dict[str, Any], form: forms.BaseForm) -> None:
    for bound in form:
        if bound.field.disabled:
            continue
        widget = bound.field.widget
        value = bound.value()
        if isinstance(widget, forms.CheckboxInput):
            if value:
                data[bound.html_name] = "on"
        elif isinstance(widget, forms.MultiWidget):
            parts = value if isinstance(value, list | tuple) else widget.decompress(value)
            for i, (sub, part) in enumerate(zip(widget.widgets, parts, strict=True)):
                data[f"{bound.html_name}_{i}"] = sub.format_value(part) or ""
        elif isinstance(value, list | tuple):
            data[bound.html_name] = [str(v) for v in value]
        elif value is not None:
            data[bound.html_name] = str(value)


def page_data(response: Any) -> dict[str, Any]:
    """Everything an admin add/change page would POST back unchanged, inline formsets included."""
    data: dict[str, Any] = {"_save": "Save"}
    _add_form(data, response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for bound in formset.management_form:
            data[bound.html_name] = str(bound.value())
        for form in formset.forms:
            _add_form(data, form)
    return data


def submit(client: Client, url: str, **changes: Any) -> Any:
    """GET the admin page, change some fields, POST it back."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    data = page_data(page)
    for name, value in changes.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    return client.post(url, data)
