"""The audit log's filter form (GET). Choices are limited to what the reader may see."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.db.models import QuerySet

from apps.teams.models import Team


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False, empty_label="Any team")
    actor = forms.CharField(required=False, max_length=150, help_text="Part of a username, or “system”.")
    since = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, actions: list[str], teams: QuerySet[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["action"]).choices = [("", "Any action"), *((a, a) for a in actions)]
        cast(forms.ModelChoiceField, self.fields["team"]).queryset = teams

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", "The end date is before the start date.")
        return data
