"""Forms for team pages. They only parse input; the services in `services.py` decide what is valid.

Field names match the services' keyword arguments and model fields, so a service's ValidationError lands
next to the right input (`apps.core.forms.add_service_errors`).
"""

from __future__ import annotations

from typing import Any

from django import forms

from apps.inventory.models import GpuType

from .models import Membership


class TeamCreateForm(forms.Form):
    # Not `required`: the model's validation (via `team_create`) reports every field's problem at once.
    slug = forms.CharField(
        required=False,
        max_length=200,
        help_text="Lowercase letters, digits and '-', up to 40 characters. Used for the Kubernetes namespace; "
        "it cannot be changed later.",
    )
    name = forms.CharField(required=False, max_length=200)
    cost_center = forms.CharField(label="Cost-center code", max_length=200, required=False)


class TeamEditForm(forms.Form):
    name = forms.CharField(required=False, max_length=200)
    cost_center = forms.CharField(label="Cost-center code", max_length=200, required=False)


class MemberAddForm(forms.Form):
    user = forms.CharField(label="Username", max_length=150, help_text="The person's Pareto username.")
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class QuotaForm(forms.Form):
    gpu_type = forms.ModelChoiceField(label="GPU type", queryset=GpuType.objects.order_by("sku"))
    # No min/max here: the service owns the rule and its message.
    limit = forms.IntegerField(label="Limit (GPUs)", help_text="Zero or more GPUs of this type.")


class BudgetForm(forms.Form):
    monthly_amount = forms.DecimalField(label="Monthly amount")
    currency = forms.CharField(max_length=10, initial="USD", help_text="Three-letter code, e.g. USD or EUR.")
    alert_thresholds = forms.CharField(
        label="Alert thresholds (%)",
        initial="80, 100",
        help_text="Comma-separated percentages of the monthly amount, e.g. 50, 80, 100.",
    )

    def clean_currency(self) -> str:
        return str(self.cleaned_data["currency"]).strip().upper()

    def clean_alert_thresholds(self) -> list[str]:
        # Only split the text; `budget_set` decides what a valid percentage is.
        raw: str = self.cleaned_data["alert_thresholds"]
        values = [part.strip().removesuffix("%").strip() for part in raw.split(",") if part.strip()]
        if not values:
            raise forms.ValidationError("Give at least one percentage, e.g. 100.")
        return values

    @staticmethod
    def initial_for(budget: Any) -> dict[str, Any]:
        if budget is None:
            return {}
        return {
            "monthly_amount": budget.monthly_amount,
            "currency": budget.currency,
            "alert_thresholds": ", ".join(str(v) for v in budget.alert_thresholds),
        }
