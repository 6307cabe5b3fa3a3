"""GPU types and prices (everyone reads, admins write) and clusters (admins only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import is_admin, require, signed_in
from apps.core.api import actor_from
from apps.core.forms import add_service_errors

from . import selectors, services
from .forms import ClusterForm, ClusterInventoryForm, GpuPriceForm, GpuTypeForm
from .models import Cluster, GpuPrice, GpuType


# --- GPU types and prices -----------------------------------------------------------------------
def format_amount(value: Decimal) -> str:
    """Cents always, sub-cent digits only when a price has them: 2.5000 -> '2.50', 0.0125 -> '0.0125'."""
    cents = value.quantize(Decimal("0.01"))
    return str(cents) if cents == value else str(value.normalize())


@dataclass(frozen=True)
class PricePeriod:
    price: GpuPrice
    until: datetime | None  # None: in force until a later price is added
    state: str  # "scheduled", "current" or "past"

    @property
    def amount(self) -> str:
        return format_amount(self.price.hourly_price)


@dataclass(frozen=True)
class GpuTypeRow:
    gpu_type: GpuType
    current_price: str | None
    periods: list[PricePeriod]


def price_periods(prices: list[GpuPrice], now: datetime) -> list[PricePeriod]:
    """Newest-first prices -> the period each is (or was, or will be) in force: until the next one starts."""
    periods: list[PricePeriod] = []
    until: datetime | None = None
    current_seen = False
    for price in prices:
        if price.effective_from > now:
            state = "scheduled"
        elif not current_seen:
            state, current_seen = "current", True
        else:
            state = "past"
        periods.append(PricePeriod(price=price, until=until, state=state))
        until = price.effective_from
    return periods


@require(signed_in)
@require_http_methods(["GET"])
def gpu_type_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    gpu_types = selectors.gpu_types_with_current_price(at=now).prefetch_related(
        Prefetch("prices", queryset=GpuPrice.objects.order_by("-effective_from"), to_attr="history")
    )
    rows = []
    for gpu_type in gpu_types:
        current = gpu_type.current_price  # type: ignore[attr-defined]  # annotated by the selector
        rows.append(
            GpuTypeRow(
                gpu_type=gpu_type,
                current_price=None if current is None else format_amount(current),
                periods=price_periods(gpu_type.history, now),
            )
        )
    return render(request, "inventory/gpu_types.html", {"rows": rows, "now": now})


def _form_page(
    request: HttpRequest,
    form: Any,
    *,
    title: str,
    submit: str,
    cancel_url: str,
    back_label: str,
    template: str = "includes/form_page.html",
    **extra: Any,
) -> HttpResponse:
    context = {
        "form": form,
        "title": title,
        "submit": submit,
        "cancel_url": cancel_url,
        "back_url": cancel_url,
        "back_label": back_label,
        **extra,
    }
    return render(request, template, context)


def _confirm(
    request: HttpRequest, *, title: str, details: list[str], confirm_label: str, cancel_url: str, errors: list[str]
) -> HttpResponse:
    """The shared confirmation page; with errors (the service refused) it answers 409 and says why."""
    context = {
        "title": title,
        "question": title,
        "details": details,
        "errors": errors,
        "confirm_label": confirm_label,
        "cancel_url": cancel_url,
        "danger": True,
    }
    return render(request, "includes/confirm.html", context, status=409 if errors else 200)


@require(is_admin)
@require_http_methods(["GET", "POST"])
def gpu_type_create(request: HttpRequest) -> HttpResponse:
    form = GpuTypeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            gpu_type = services.gpu_type_create(actor=actor_from(request), **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Added GPU type {gpu_type.sku}. Add its price next.")
            return redirect("inventory:gpu_price_add", pk=gpu_type.pk)
    return _form_page(
        request,
        form,
        title="Add a GPU type",
        submit="Add GPU type",
        cancel_url=reverse("inventory:gpu_types"),
        back_label="GPU types and prices",
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def gpu_type_edit(request: HttpRequest, pk: int) -> HttpResponse:
    gpu_type = get_object_or_404(GpuType, pk=pk)
    # The form validates a copy, so the page keeps the saved SKU in its title while the input has errors.
    form = GpuTypeForm(request.POST or None, instance=GpuType.objects.get(pk=pk))
    if request.method == "POST" and form.is_valid():
        try:
            gpu_type = services.gpu_type_update(actor=actor_from(request), gpu_type=gpu_type, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved GPU type {gpu_type.sku}.")
            return redirect("inventory:gpu_types")
    return _form_page(
        request,
        form,
        title=f"Edit GPU type {gpu_type.sku}",
        submit="Save",
        cancel_url=reverse("inventory:gpu_types"),
        back_label="GPU types and prices",
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def gpu_type_delete(request: HttpRequest, pk: int) -> HttpResponse:
    gpu_type = get_object_or_404(GpuType, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.gpu_type_delete(actor=actor_from(request), gpu_type=gpu_type)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Deleted GPU type {gpu_type.sku} and its price history.")
            return redirect("inventory:gpu_types")
    return _confirm(
        request,
        title=f"Delete GPU type {gpu_type.sku}?",
        details=[
            "Its whole price history is deleted with it.",
            "A type still used by quotas, clusters or catalog models cannot be deleted.",
        ],
        confirm_label=f"Delete {gpu_type.sku}",
        cancel_url=reverse("inventory:gpu_types"),
        errors=errors,
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def gpu_price_add(request: HttpRequest, pk: int) -> HttpResponse:
    gpu_type = get_object_or_404(GpuType, pk=pk)
    form = GpuPriceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            price = services.gpu_price_add(actor=actor_from(request), gpu_type=gpu_type, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Added {price}.")
            return redirect(reverse("inventory:gpu_types") + f"#gpu-{gpu_type.pk}")
    return _form_page(
        request,
        form,
        template="inventory/gpu_price_form.html",
        title=f"New price for {gpu_type.sku}",
        submit="Add price",
        cancel_url=reverse("inventory:gpu_types") + f"#gpu-{gpu_type.pk}",
        back_label="GPU types and prices",
        gpu_type=gpu_type,
        latest=GpuPrice.objects.filter(gpu_type=gpu_type).order_by("-effective_from").first(),
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def gpu_price_delete(request: HttpRequest, pk: int) -> HttpResponse:
    price = get_object_or_404(GpuPrice.objects.select_related("gpu_type"), pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.gpu_price_delete(actor=actor_from(request), price=price)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Withdrew the scheduled price {price}.")
            return redirect(reverse("inventory:gpu_types") + f"#gpu-{price.gpu_type_id}")
    starts = timezone.localtime(price.effective_from)
    return _confirm(
        request,
        title=f"Withdraw the scheduled price of {price.gpu_type.sku}?",
        details=[
            f"{price.hourly_price} {price.currency}/h from {starts:%Y-%m-%d %H:%M %Z} will not apply.",
            "The price in force before it goes on applying until a later price starts.",
        ],
        confirm_label="Withdraw price",
        cancel_url=reverse("inventory:gpu_types") + f"#gpu-{price.gpu_type_id}",
        errors=errors,
    )


# --- clusters -----------------------------------------------------------------------------------
@require(is_admin)
@require_http_methods(["GET"])
def cluster_list(request: HttpRequest) -> HttpResponse:
    return render(request, "inventory/clusters.html", {"clusters": selectors.clusters_with_inventory()})


def _cluster_page(request: HttpRequest, cluster: Cluster, inventory_form: ClusterInventoryForm) -> HttpResponse:
    context: dict[str, Any] = {"cluster": cluster, "inventory_form": inventory_form}
    if cluster.runtime == Cluster.Runtime.KUBERNETES:
        # What the API server says now (one quick call each; an error is shown, not raised). Imported here: the
        # Kubernetes client is only loaded when a Kubernetes cluster's page is opened.
        from apps.endpoints.runtime.kube import cluster_facts, missing_image_reason

        facts = cluster_facts(cluster)
        recorded = {row.gpu_type_id: row.count for row in cluster.inventory.all()}
        context.update(
            facts=facts,
            missing_image=missing_image_reason(cluster),
            gpu_rows=[
                {"capacity": c, "recorded": recorded.get(c.gpu_type.pk) if c.gpu_type else None} for c in facts.gpus
            ],
        )
    return render(request, "inventory/cluster_detail.html", context)


@require(is_admin)
@require_http_methods(["GET"])
def cluster_detail(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(selectors.clusters_with_inventory(), pk=pk)
    return _cluster_page(request, cluster, ClusterInventoryForm())


@require(is_admin)
@require_POST
def cluster_inventory_set(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = ClusterInventoryForm(request.POST)
    if form.is_valid():
        try:
            row = services.cluster_inventory_set(actor=actor_from(request), cluster=cluster, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            sku = form.cleaned_data["gpu_type"].sku
            if row is None:
                messages.success(request, f"{cluster.name} has no {sku} GPUs now.")
            else:
                messages.success(request, f"{cluster.name} has {row.count} x {sku} now.")
            return redirect("inventory:cluster_detail", pk=cluster.pk)
    # The detail page again, with the errors next to the inventory fields.
    cluster = get_object_or_404(selectors.clusters_with_inventory(), pk=pk)
    return _cluster_page(request, cluster, form)


@require(is_admin)
@require_http_methods(["GET", "POST"])
def cluster_create(request: HttpRequest) -> HttpResponse:
    form = ClusterForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cluster = services.cluster_create(actor=actor_from(request), **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Added cluster {cluster.name}. Set its GPU inventory next.")
            return redirect("inventory:cluster_detail", pk=cluster.pk)
    form.hide_rejected_secrets()
    return _form_page(
        request,
        form,
        template="inventory/cluster_form.html",
        title="Add a cluster",
        submit="Add cluster",
        cancel_url=reverse("inventory:clusters"),
        back_label="Clusters",
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def cluster_edit(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    form = ClusterForm(request.POST or None, instance=Cluster.objects.get(pk=pk))
    if request.method == "POST" and form.is_valid():
        try:
            cluster = services.cluster_update(actor=actor_from(request), cluster=cluster, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved cluster {cluster.name}.")
            return redirect("inventory:cluster_detail", pk=cluster.pk)
    form.hide_rejected_secrets()
    return _form_page(
        request,
        form,
        template="inventory/cluster_form.html",
        title=f"Edit cluster {cluster.name}",
        submit="Save",
        cancel_url=reverse("inventory:cluster_detail", args=[cluster.pk]),
        back_label=cluster.name,
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def cluster_delete(request: HttpRequest, pk: int) -> HttpResponse:
    cluster = get_object_or_404(Cluster, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.cluster_delete(actor=actor_from(request), cluster=cluster)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"Deleted cluster {cluster.name}.")
            return redirect("inventory:clusters")
    return _confirm(
        request,
        title=f"Delete cluster {cluster.name}?",
        details=[
            "Pareto forgets this cluster and its GPU inventory.",
            "Nothing running on the cluster itself is touched.",
        ],
        confirm_label=f"Delete {cluster.name}",
        cancel_url=reverse("inventory:cluster_detail", args=[cluster.pk]),
        errors=errors,
    )
