"""The group -> team mapping form. It parses input; `services.py` decides what is valid."""

from __future__ import annotations

from django import forms

from apps.teams.models import Membership, Team


class GroupMappingForm(forms.Form):
    # Not `required`: the service owns the rule and says it in words that fit.
    group_id = forms.CharField(
        label="Group id",
        required=False,
        max_length=200,
        help_text="The group's Object Id in Entra ID (Groups → the group → Overview), e.g. "
        "“2f1b6c8e-4c3d-4a6b-9f0e-1a2b3c4d5e6f”.",
    )
    label = forms.CharField(
        label="Group name",
        required=False,
        max_length=200,
        help_text="Optional: the group's display name, so people can read this list. Matching uses the id only.",
    )
    team = forms.ModelChoiceField(queryset=Team.objects.order_by("slug"), required=False, empty_label="— choose —")
    role = forms.ChoiceField(
        choices=Membership.Role.choices,
        initial=Membership.Role.MEMBER,
        help_text="Members of the group join the team with this role. A lead manages members and endpoints.",
    )
