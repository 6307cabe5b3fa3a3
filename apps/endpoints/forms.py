"""Forms for endpoint pages. They parse input; `endpoints.services` decides what is allowed.

Field names match the services' keyword arguments, so a service's ValidationError lands next to the right input
(`apps.core.forms.add_service_errors`).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from apps.accounts.permissions import Access
from apps.catalog.models import CatalogModel
from apps.inventory.forms import PrettyJSONField
from apps.inventory.models import GpuType
from apps.inventory.selectors import clusters_with_inventory
from apps.teams.models import DNS1123_LABEL, Team

from .engine_args import ALLOWED
from .models import Endpoint, QuotaRequest
from .tryit import MAX_PROMPT_CHARS


def requestable_teams(access: Access) -> QuerySet[Team]:
    """Teams the person may request endpoints and quota for: every team for admins, the teams they lead."""
    teams = Team.objects.order_by("name")
    return teams if access.is_admin else teams.filter(pk__in=access.lead_team_ids)


def engine_args_help() -> str:
    keys = ", ".join(sorted(ALLOWED))
    return f'A JSON object, e.g. {{"enable_prefix_caching": true}}. Allowed keys: {keys}.'


class TeamChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.slug})"


class CatalogModelChoiceField(forms.ModelChoiceField):
    """Approved models, each labelled with the GPUs the catalog recommends for it."""

    def label_from_instance(self, obj: Any) -> str:
        if obj.recommended_gpu_type is None:
            return f"{obj.name} (no GPU recommendation)"
        return f"{obj.name} (recommended: {obj.recommended_gpu_count} x {obj.recommended_gpu_type.sku})"


class ClusterChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        inventory = ", ".join(f"{row.count} x {row.gpu_type.sku}" for row in obj.inventory.all())
        return f"{obj.name} ({inventory or 'no GPUs listed'})"


class EndpointRequestForm(forms.Form):
    team = TeamChoiceField(
        queryset=Team.objects.none(), error_messages={"invalid_choice": "Choose one of the teams you lead."}
    )
    name = forms.CharField(
        max_length=40,
        validators=[DNS1123_LABEL],
        help_text="Lowercase letters, digits and '-', up to 40 characters; part of the endpoint's URL.",
    )
    model = CatalogModelChoiceField(
        label="Model",
        queryset=CatalogModel.objects.filter(status=CatalogModel.Status.APPROVED)
        .select_related("recommended_gpu_type")
        .order_by("name"),
        error_messages={
            "invalid_choice": "Choose an approved model; blocked and deprecated models cannot be deployed."
        },
    )
    cluster = ClusterChoiceField(queryset=clusters_with_inventory())
    gpu_type = forms.ModelChoiceField(
        label="GPU type",
        queryset=GpuType.objects.order_by("sku"),
        required=False,
        empty_label="The model's recommended type",
    )
    gpus_per_replica = forms.IntegerField(
        label="GPUs per replica",
        required=False,
        help_text="Tensor-parallel size. Empty: the model's recommended count.",
    )
    min_replicas = forms.IntegerField(label="Minimum replicas", initial=1)
    max_replicas = forms.IntegerField(
        label="Maximum replicas",
        initial=1,
        help_text="The endpoint reserves GPUs per replica x maximum replicas of the team's quota.",
    )
    max_model_len = forms.IntegerField(
        label="Maximum context length (tokens)", required=False, help_text="Empty: the model's own context length."
    )
    engine_args = PrettyJSONField(label="Engine arguments", required=False, help_text=engine_args_help())

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = requestable_teams(access)  # type: ignore[attr-defined]

    def service_kwargs(self) -> dict[str, Any]:
        """The cleaned input as `endpoint_request` takes it; empty optional fields fall back to the model's."""
        data = dict(self.cleaned_data)
        model: CatalogModel = data["model"]
        if data.get("gpus_per_replica") is None:
            data["gpus_per_replica"] = model.recommended_gpu_count
        return data


class EstimateForm(EndpointRequestForm):
    """The request form's fields, all optional: the estimate explains whatever has been chosen so far."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


class EndpointChangeForm(forms.Form):
    min_replicas = forms.IntegerField(label="Minimum replicas")
    max_replicas = forms.IntegerField(label="Maximum replicas")
    engine_args = PrettyJSONField(label="Engine arguments", required=False, help_text=engine_args_help())

    @classmethod
    def initial_for(cls, endpoint: Endpoint) -> dict[str, Any]:
        return {
            "min_replicas": endpoint.min_replicas,
            "max_replicas": endpoint.max_replicas,
            "engine_args": endpoint.engine_args,
        }


class ReasonForm(forms.Form):
    # Not `required`: the service owns the rule ("say why") and its message.
    reason = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to the team, so they know what to change.",
    )
    # Where to return after deciding (the queue or a list); checked by the view before it is followed.
    next = forms.CharField(required=False, widget=forms.HiddenInput)


class TryForm(forms.Form):
    prompt = forms.CharField(
        max_length=MAX_PROMPT_CHARS,
        initial="Say hello in five words.",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sent once as a chat message; the answer is cut at 32 tokens.",
    )


class QuotaRequestForm(forms.Form):
    team = TeamChoiceField(
        queryset=Team.objects.none(), error_messages={"invalid_choice": "Choose one of the teams you lead."}
    )
    gpu_type = forms.ModelChoiceField(label="GPU type", queryset=GpuType.objects.order_by("sku"))
    requested_limit = forms.IntegerField(
        label="New limit (GPUs)", help_text="The total the team should be allowed, not the increase."
    )
    justification = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What the GPUs are for, and for how long.",
    )

    def __init__(self, *args: Any, access: Access, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = requestable_teams(access)  # type: ignore[attr-defined]


class EndpointFilterForm(forms.Form):
    team = forms.ChoiceField(required=False)
    state = forms.ChoiceField(
        required=False,
        choices=[("", "Live (not deleted or rejected)"), *Endpoint.State.choices],
    )

    def __init__(self, *args: Any, teams: list[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].choices = [("", "Every team"), *((t.slug, t.name) for t in teams)]  # type: ignore[attr-defined]

    def filters(self) -> dict[str, str]:
        """The filters that parsed; a bad value (a team not in the list) is ignored, not an error page."""
        if not self.is_bound:
            return {"team": "", "state": ""}
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {"team": data.get("team", ""), "state": data.get("state", "")}


class QuotaRequestFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state"), *QuotaRequest.State.choices])

    def filters(self) -> dict[str, str]:
        if not self.is_bound:
            return {"state": ""}
        self.is_valid()
        return {"state": getattr(self, "cleaned_data", {}).get("state", "")}
