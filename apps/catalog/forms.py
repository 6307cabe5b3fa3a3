"""Forms for the model catalog. They parse input; `catalog.services` decides what is allowed."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.inventory.forms import PrettyJSONField
from apps.inventory.models import GpuType

from .models import CatalogModel
from .services import CATALOG_FIELDS


class CatalogFilterForm(forms.Form):
    q = forms.CharField(label="Name", required=False, max_length=120)
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *CatalogModel.Status.choices])
    family = forms.ChoiceField(required=False, choices=[("", "Any family")])

    def __init__(self, *args: Any, families: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["family"].choices = [("", "Any family"), *((f, f) for f in families)]  # type: ignore[attr-defined]

    def filters(self) -> dict[str, str]:
        """The filters that parsed; a bad one (e.g. a family no model has) is ignored, not an error page."""
        if not self.is_bound:
            return {}
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        return {
            "search": data.get("q", ""),
            "status": data.get("status", ""),
            "family": data.get("family", ""),
        }


class CatalogModelForm(forms.ModelForm):
    default_engine_args = PrettyJSONField(
        label="Default engine arguments",
        required=False,
        help_text='A JSON object of engine argument -> value, e.g. {"max_model_len": 8192, "enable_prefix_caching": '
        "true}.",
    )
    recommended_gpu_type = forms.ModelChoiceField(
        label="Recommended GPU type",
        queryset=GpuType.objects.order_by("sku"),
        required=False,
        error_messages={"invalid_choice": "Choose one of the GPU types in the list."},
    )

    class Meta:
        model = CatalogModel
        fields: tuple[str, ...] = CATALOG_FIELDS

    FIELDSETS = (
        ("Model", ("name", "source", "family", "license", "status")),
        (
            "Architecture",
            (
                "parameter_count",
                "context_length",
                "dtype",
                "num_layers",
                "hidden_size",
                "num_attention_heads",
                "num_kv_heads",
                "head_dim",
            ),
        ),
        ("Quality", ("quality_score", "quality_source")),
        ("Deployment", ("recommended_gpu_type", "recommended_gpu_count", "default_engine_args")),
    )

    def fieldsets(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(legend, [self[name] for name in names if name in self.fields]) for legend, names in self.FIELDSETS]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        heads, kv = data.get("num_attention_heads"), data.get("num_kv_heads")
        if heads is not None and kv is not None and kv > heads:
            self.add_error("num_kv_heads", "KV heads cannot exceed attention heads.")
        return data


class CatalogModelEditForm(CatalogModelForm):
    """Status changes have their own action (and audit event), so editing leaves the status alone."""

    class Meta(CatalogModelForm.Meta):
        fields = tuple(name for name in CATALOG_FIELDS if name != "status")


class CatalogStatusForm(forms.Form):
    status = forms.ChoiceField(choices=CatalogModel.Status.choices)
