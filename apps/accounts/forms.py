"""Forms for account pages. They parse input; `services.py` decides what is valid."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone


class ApiTokenCreateForm(forms.Form):
    # No `required` here: the service owns the rule and its message.
    name = forms.CharField(required=False, max_length=100, help_text="What uses it, e.g. “nightly report script”.")
    expires_at = forms.DateField(
        label="Expires on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional. The token stops working at the start of this day. Leave empty for no expiry.",
    )

    def clean_expires_at(self) -> dt.datetime | None:
        day: dt.date | None = self.cleaned_data["expires_at"]
        if day is None:
            return None
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
