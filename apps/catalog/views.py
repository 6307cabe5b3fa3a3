"""Catalog pages: everyone signed in browses; platform admins curate."""

from __future__ import annotations

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.permissions import is_admin, require, signed_in
from apps.core.api import actor_from
from apps.core.forms import add_service_errors

from . import selectors, services
from .forms import CatalogFilterForm, CatalogModelEditForm, CatalogModelForm, CatalogStatusForm
from .models import CatalogModel

PAGE_SIZE = 50


@require(signed_in)
@require_http_methods(["GET"])
def catalog_list(request: HttpRequest) -> HttpResponse:
    filter_form = CatalogFilterForm(request.GET or None, families=selectors.catalog_families())
    filters = filter_form.filters()
    page = Paginator(selectors.catalog_model_list(**filters), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "catalog/list.html",
        {
            "filter_form": filter_form,
            "filtered": any(filters.values()),
            "page": page,
            "rows": [(model, selectors.format_parameter_count(model.parameter_count)) for model in page],
            "query": query.urlencode(),
        },
    )


@require(signed_in)
@require_http_methods(["GET"])
def catalog_detail(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(CatalogModel.objects.select_related("recommended_gpu_type"), pk=pk)
    return render(
        request,
        "catalog/detail.html",
        {
            "model": model,
            "parameters": selectors.format_parameter_count(model.parameter_count),
            "kv_cache": selectors.catalog_model_kv_cache(model),
            "engine_args": json.dumps(model.default_engine_args, indent=2, sort_keys=True),
            "status_form": CatalogStatusForm(initial={"status": model.status}),
        },
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def catalog_create(request: HttpRequest) -> HttpResponse:
    form = CatalogModelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            model = services.catalog_model_create(actor=actor_from(request), **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Added {model.name} to the catalog.")
            return redirect("catalog:detail", pk=model.pk)
    return render(
        request,
        "catalog/form.html",
        {
            "form": form,
            "title": "Add a model to the catalog",
            "submit": "Add model",
            "cancel_url": reverse("catalog:list"),
            "back_label": "Model catalog",
        },
    )


@require(is_admin)
@require_http_methods(["GET", "POST"])
def catalog_edit(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(CatalogModel, pk=pk)
    # The form validates a copy, so the page keeps showing the saved name while the input has errors.
    form = CatalogModelEditForm(request.POST or None, instance=CatalogModel.objects.get(pk=model.pk))
    if request.method == "POST" and form.is_valid():
        try:
            model = services.catalog_model_update(actor=actor_from(request), model=model, **form.cleaned_data)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Saved {model.name}.")
            return redirect("catalog:detail", pk=model.pk)
    return render(
        request,
        "catalog/form.html",
        {
            "form": form,
            "title": f"Edit {model.name}",
            "submit": "Save",
            "cancel_url": reverse("catalog:detail", args=[model.pk]),
            "back_label": model.name,
        },
    )


@require(is_admin)
@require_POST
def catalog_set_status(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(CatalogModel, pk=pk)
    form = CatalogStatusForm(request.POST)
    if form.is_valid():
        try:
            model = services.catalog_model_set_status(
                actor=actor_from(request), model=model, status=form.cleaned_data["status"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{model.name} is now {model.get_status_display().lower()}.")
    else:
        messages.error(request, "Choose approved, deprecated or blocked.")
    return redirect("catalog:detail", pk=model.pk)


@require(is_admin)
@require_http_methods(["GET", "POST"])
def catalog_delete(request: HttpRequest, pk: int) -> HttpResponse:
    model = get_object_or_404(CatalogModel, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            services.catalog_model_delete(actor=actor_from(request), model=model)
        except ValidationError as exc:
            # Still referenced (e.g. by endpoints): say by what, and suggest blocking it instead.
            errors = [*exc.messages, "Block or deprecate the model instead, so that nobody deploys it again."]
        else:
            messages.success(request, f"Deleted {model.name} from the catalog.")
            return redirect("catalog:list")
    return render(
        request,
        "includes/confirm.html",
        {
            "title": f"Delete {model.name}?",
            "question": f"Delete {model.name} from the catalog?",
            "details": ["Nobody can deploy it any more.", "This cannot be undone."],
            "errors": errors,
            "confirm_label": f"Delete {model.name}",
            "cancel_url": reverse("catalog:detail", args=[model.pk]),
            "danger": True,
        },
        status=409 if errors else 200,
    )
