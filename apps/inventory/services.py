"""Writes for GPU types, their price history and clusters. Each writes an AuditEvent."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit.services import Actor
from apps.core.services import model_create, model_delete, model_update, whole_number

from .models import Cluster, ClusterGpuInventory, GpuPrice, GpuType

# A price change entered "now" through a form reaches the service a little later.
BACKDATE_LEEWAY = timedelta(minutes=5)

GPU_TYPE_FIELDS = ("sku", "memory_gib", "node_selector_label", "node_selector_value", "ray_accelerator_type")
# Stricter than the model's ENV_VAR_NAME on purpose: conventional variable names, and most token formats fail it.
SECRET_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")

CLUSTER_FIELDS = (
    "name",
    "runtime",
    "description",
    "ray_dashboard_url",
    "ray_serve_url",
    "cpu_only",
    "kube_auth",
    "kubeconfig_env",
    "kube_context",
    "secret_env",
    "kube_flavour",
    "kube_ray_image",
    "kube_vllm_image",
    "kube_ingress_host",
    "kube_hf_token_secret",
    "metrics_source",
    "metrics_urls",
    "prometheus_url",
)


def gpu_type_create(*, actor: Actor, **fields: Any) -> GpuType:
    unknown = set(fields) - set(GPU_TYPE_FIELDS)
    if unknown:
        raise ValidationError({name: "Unknown field." for name in sorted(unknown)})
    return model_create(GpuType, actor=actor, action="gpu_type.create", data=fields)


def gpu_type_update(*, actor: Actor, gpu_type: GpuType, **changes: Any) -> GpuType:
    return model_update(gpu_type, actor=actor, action="gpu_type.update", data=changes, allowed=GPU_TYPE_FIELDS)


def gpu_type_delete(*, actor: Actor, gpu_type: GpuType) -> None:
    model_delete(gpu_type, actor=actor, action="gpu_type.delete")


def gpu_price_add(
    *,
    actor: Actor,
    gpu_type: GpuType,
    hourly_price: Decimal | str,
    currency: str = "USD",
    effective_from: datetime,
    is_example: bool = False,
    note: str = "",
) -> GpuPrice:
    """Add the next price of a GPU type. It is in force from `effective_from` until a later price starts.

    Periods never overlap: a new price must start after every existing price of the type, so that a cost
    already computed for a past hour can never change (a correction is a new price from now on).
    """
    try:
        price = Decimal(str(hourly_price).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError({"hourly_price": "Enter a number."}) from None
    if isinstance(hourly_price, bool) or not price.is_finite():  # NaN and Infinity parse, but are no price
        raise ValidationError({"hourly_price": "Enter a number."})
    if price < 0:
        raise ValidationError({"hourly_price": "The price cannot be negative."})
    if not isinstance(effective_from, datetime):
        raise ValidationError({"effective_from": "Give the moment the price takes effect."})
    if timezone.is_naive(effective_from):
        effective_from = timezone.make_aware(effective_from, timezone.get_current_timezone())
    with transaction.atomic():
        # Serialise price changes per GPU type, so two admins cannot slip overlapping periods in together.
        if GpuType.objects.select_for_update().filter(pk=gpu_type.pk).first() is None:
            raise ValidationError({"gpu_type": "Unknown GPU type; it may have been deleted."})
        latest = GpuPrice.objects.filter(gpu_type=gpu_type).order_by("-effective_from").first()
        if latest is not None and effective_from <= latest.effective_from:
            raise ValidationError(
                {
                    "effective_from": (
                        f"Overlaps the price period of {latest.hourly_price} {latest.currency}/h in force from "
                        f"{latest.effective_from:%Y-%m-%d %H:%M %Z}; a new price must start after it."
                    )
                }
            )
        if latest is not None and effective_from < timezone.now() - BACKDATE_LEEWAY:
            # The first price of a type may start in the past (it opens the history); a later one may not,
            # since it would re-price hours that were already costed under the previous price.
            raise ValidationError(
                {
                    "effective_from": (
                        "A price change cannot start in the past: it would change costs already computed with "
                        f"the price in force since {latest.effective_from:%Y-%m-%d %H:%M %Z}. Start it now or later."
                    )
                }
            )
        return model_create(
            GpuPrice,
            actor=actor,
            action="gpu_price.add",
            data={
                "gpu_type": gpu_type,
                "hourly_price": price,
                "currency": currency,
                "effective_from": effective_from,
                "is_example": is_example,
                "note": note,
            },
        )


def gpu_price_delete(*, actor: Actor, price: GpuPrice) -> None:
    """Withdraw a scheduled price. A price already in force is history and stays."""
    if price.effective_from <= timezone.now():
        raise ValidationError("This price is already in force; add a new price instead of deleting it.")
    model_delete(price, actor=actor, action="gpu_price.delete")


def _check_cluster(data: dict[str, Any]) -> None:
    errors: dict[str, str] = {}
    runtime = data.get("runtime")
    if runtime == Cluster.Runtime.RAY and not data.get("ray_dashboard_url"):
        errors["ray_dashboard_url"] = "A Ray cluster needs its dashboard URL."
    if runtime == Cluster.Runtime.KUBERNETES:
        auth = data.get("kube_auth")
        if auth not in (Cluster.KubeAuth.IN_CLUSTER, Cluster.KubeAuth.KUBECONFIG):
            errors["kube_auth"] = "Choose in-cluster or kubeconfig."
        elif auth == Cluster.KubeAuth.KUBECONFIG and not data.get("kubeconfig_env"):
            errors["kubeconfig_env"] = "Name the environment variable that holds the kubeconfig path."
    secret_env = data.get("secret_env") or {}
    if not isinstance(secret_env, dict):
        errors["secret_env"] = "Give an object of secret name -> environment variable name."  # noqa: S105
    else:
        for key, env_name in secret_env.items():
            # Upper case only: a value such as "hf_AbC123..." is a valid variable name but is a token.
            if not isinstance(env_name, str) or not SECRET_ENV_NAME.fullmatch(env_name):
                errors["secret_env"] = (
                    f"'{key}' must name an environment variable, not hold a secret value. Store the secret in the "
                    "environment of the web and worker processes and give its variable name here, in capitals "
                    "(e.g. PARETO_HF_TOKEN)."
                )
    if errors:
        raise ValidationError(errors)


def cluster_create(*, actor: Actor, **fields: Any) -> Cluster:
    unknown = set(fields) - set(CLUSTER_FIELDS)
    if unknown:
        raise ValidationError({name: "Unknown field." for name in sorted(unknown)})
    _check_cluster(fields)
    return model_create(Cluster, actor=actor, action="cluster.create", data=fields)


def cluster_update(*, actor: Actor, cluster: Cluster, **changes: Any) -> Cluster:
    merged = {name: getattr(cluster, name) for name in CLUSTER_FIELDS} | changes
    _check_cluster(merged)
    return model_update(cluster, actor=actor, action="cluster.update", data=changes, allowed=CLUSTER_FIELDS)


def cluster_delete(*, actor: Actor, cluster: Cluster) -> None:
    model_delete(cluster, actor=actor, action="cluster.delete")


def cluster_inventory_set(
    *, actor: Actor, cluster: Cluster, gpu_type: GpuType, count: int
) -> ClusterGpuInventory | None:
    """Set how many GPUs of a type the cluster has; zero removes the row."""
    count = whole_number(count, field="count", message="The GPU count must be a whole number, zero or more.")
    if gpu_type.pk is None or not GpuType.objects.filter(pk=gpu_type.pk).exists():
        raise ValidationError({"gpu_type": "Unknown GPU type; it may have been deleted."})
    with transaction.atomic():
        row = ClusterGpuInventory.objects.select_for_update().filter(cluster=cluster, gpu_type=gpu_type).first()
        if row is None:
            if count == 0:
                return None
            return model_create(
                ClusterGpuInventory,
                actor=actor,
                action="cluster_inventory.create",
                data={"cluster": cluster, "gpu_type": gpu_type, "count": count},
            )
        if count == 0:
            model_delete(row, actor=actor, action="cluster_inventory.delete")
            return None
        return model_update(
            row, actor=actor, action="cluster_inventory.update", data={"count": count}, allowed=("count",)
        )
