"""Writes for the model catalog. Each writes an AuditEvent."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from apps.audit.services import Actor
from apps.core.services import model_create, model_delete, model_update

from .models import CatalogModel

CATALOG_FIELDS = (
    "name",
    "source",
    "family",
    "parameter_count",
    "context_length",
    "license",
    "dtype",
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "num_kv_heads",
    "head_dim",
    "quality_score",
    "quality_source",
    "status",
    "recommended_gpu_type",
    "recommended_gpu_count",
    "default_engine_args",
)


def _check(data: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    if data.get("quality_score") is not None and not data.get("quality_source"):
        errors["quality_source"] = "Say where the quality score comes from."
    args = data.get("default_engine_args")
    if args is not None and not isinstance(args, dict):
        errors["default_engine_args"] = "Give an object of engine argument -> value."
    heads, kv = _as_int(data.get("num_attention_heads")), _as_int(data.get("num_kv_heads"))
    if heads is not None and kv is not None and kv > 0:
        if kv > heads:
            errors["num_kv_heads"] = "KV heads cannot exceed attention heads."
        elif heads % kv != 0:
            errors["num_kv_heads"] = "Attention heads must be a multiple of KV heads."
    if errors:
        raise ValidationError(errors)


def _as_int(value: Any) -> int | None:
    """A whole number given as int or digits (forms and JSON send both); None leaves the check to full_clean."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def catalog_model_create(*, actor: Actor, **fields: Any) -> CatalogModel:
    unknown = set(fields) - set(CATALOG_FIELDS)
    if unknown:
        raise ValidationError({name: "Unknown field." for name in sorted(unknown)})
    _check(fields)
    return model_create(CatalogModel, actor=actor, action="catalog_model.create", data=fields)


def catalog_model_update(*, actor: Actor, model: CatalogModel, **changes: Any) -> CatalogModel:
    merged = {name: getattr(model, name) for name in CATALOG_FIELDS if name != "recommended_gpu_type"} | changes
    _check(merged)
    return model_update(model, actor=actor, action="catalog_model.update", data=changes, allowed=CATALOG_FIELDS)


def catalog_model_set_status(*, actor: Actor, model: CatalogModel, status: str) -> CatalogModel:
    return model_update(model, actor=actor, action="catalog_model.status", data={"status": status}, allowed=("status",))


def catalog_model_delete(*, actor: Actor, model: CatalogModel) -> None:
    model_delete(model, actor=actor, action="catalog_model.delete")
