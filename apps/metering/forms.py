from __future__ import annotations

import datetime as dt

from django import forms
from django.core.exceptions import ValidationError

from . import selectors


class MonthField(forms.CharField):
    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("max_length", 7)
        kwargs.setdefault("help_text", "YYYY-MM")
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.widget.attrs.update({"placeholder": "2026-10", "pattern": r"\d{4}-\d{2}", "inputmode": "numeric"})

    def clean(self, value: object) -> dt.date:  # type: ignore[override]
        text = super().clean(value)
        try:
            return selectors.parse_month(text)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["month"]) from exc


class MonthFilterForm(forms.Form):
    month = MonthField(required=True, label="Month")


class GenerateForm(forms.Form):
    month = MonthField(label="Month")


class BudgetPolicyForm(forms.Form):
    block_requests_over_budget = forms.BooleanField(
        required=False,
        label="Block new endpoint requests while over budget",
        help_text="While this month's metered cost is at or over the team's monthly budget, new endpoint requests "
        "are refused with the reason. Running endpoints are not touched.",
    )
