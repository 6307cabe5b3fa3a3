"""Form plumbing every app's pages share."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError


def add_service_errors(form: forms.BaseForm, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form: next to the field it names, otherwise above the form.

    Services name model fields; a form that calls its input the same gets each message beside the input.
    """
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for name, errors in exc.error_dict.items():
        if name in form.fields:
            form.add_error(name, errors)
        else:
            label = "" if name == "__all__" else f"{name.replace('_', ' ').capitalize()}: "
            form.add_error(None, [f"{label}{message}" for error in errors for message in error.messages])
