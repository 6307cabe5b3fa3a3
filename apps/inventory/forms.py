"""Forms for GPU types, prices and clusters. They parse input; the services decide what is allowed."""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms

from apps.teams.models import CURRENCY

from .models import Cluster, GpuType
from .services import CLUSTER_FIELDS, GPU_TYPE_FIELDS, SECRET_ENV_NAME

# A Kubernetes object name or host name: a DNS-1123 subdomain.
DNS_SUBDOMAIN = re.compile(r"(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class PrettyJSONField(forms.JSONField):
    """JSON edited as text, shown indented so that objects with a few keys stay readable."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "mono"}))
        kwargs.setdefault("initial", dict)  # a new row starts with "{}", not "null"
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)

    def clean(self, value: Any) -> Any:
        cleaned = super().clean(value)
        return {} if cleaned is None else cleaned  # an empty box means "no entries"


class GpuTypeForm(forms.ModelForm):
    class Meta:
        model = GpuType
        fields = GPU_TYPE_FIELDS


class GpuPriceForm(forms.Form):
    hourly_price = forms.DecimalField(
        label="Hourly price per GPU",
        max_digits=12,
        decimal_places=4,
        min_value=0,
        error_messages={"min_value": "The price cannot be negative."},
    )
    currency = forms.CharField(max_length=3, initial="USD", validators=[CURRENCY])
    effective_from = forms.DateTimeField(
        label="In force from",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="The price applies from this moment until the next price starts. It must start after the latest "
        "existing price.",
    )
    is_example = forms.BooleanField(
        label="Example price", required=False, help_text="Demo data, not a real quote; shown as 'example price'."
    )
    note = forms.CharField(max_length=200, required=False, help_text="e.g. where the quote comes from.")


class ClusterForm(forms.ModelForm):
    # A Ray dashboard usually listens on plain HTTP inside the network (e.g. http://127.0.0.1:8265).
    ray_dashboard_url = forms.URLField(label="Ray dashboard URL", max_length=200, required=False, assume_scheme="http")
    secret_env = PrettyJSONField(
        label="Secrets (environment variable names)",
        required=False,
        help_text="Never paste a secret here. Give only the NAME of the environment variable that holds it, as "
        '{"secret name": "ENV_VAR_NAME"} with names in capitals, e.g. {"hf_token": "PARETO_HF_TOKEN"}. Set the '
        "variable itself in the "
        "environment of the web and worker processes.",
    )

    class Meta:
        model = Cluster
        # The metrics settings get their own form section with the runtimes that use them.
        fields = tuple(f for f in CLUSTER_FIELDS if not f.startswith(("metrics_", "prometheus_")))
        labels = {"kube_auth": "Kubernetes authentication", "kube_context": "Kubernetes context"}
        help_texts = {
            "kube_context": "Leave empty to use the kubeconfig's current context.",
            "kube_flavour": "A RayService per endpoint needs the KubeRay operator on the cluster; a plain vLLM "
            "Deployment (with a Service and an autoscaler) does not.",
            "kube_ray_image": "For RayServices, e.g. rayproject/ray-llm:2.60.0-py311-cu128 (Ray with vLLM).",
            "kube_vllm_image": "For plain Deployments, e.g. vllm/vllm-openai:v0.11.0.",
            "kube_ingress_host": "A host name such as llm.example.com; endpoints get "
            "https://<host>/<team>/<endpoint>/v1 through an Ingress. Leave empty for in-cluster URLs only.",
            "kube_hf_token_secret": "Name of a Secret with the key HF_TOKEN in each team namespace; Pods read the "
            "token from it, so Pareto never sees it. Leave empty for models that need no token.",
        }

    RAY_FIELDS = ("ray_dashboard_url",)
    KUBERNETES_FIELDS = (
        "kube_auth",
        "kubeconfig_env",
        "kube_context",
        "kube_flavour",
        "kube_ray_image",
        "kube_vllm_image",
        "kube_ingress_host",
        "kube_hf_token_secret",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields[
            "kubeconfig_env"
        ].help_text = "The NAME of the environment variable holding the kubeconfig path (not the kubeconfig itself)."
        self.fields["kube_flavour"].required = False  # the model's default (RayService) when left out

    def clean(self) -> dict[str, Any]:
        data = super().clean() or self.cleaned_data
        if not data.get("kube_flavour"):
            data["kube_flavour"] = Cluster.KubeFlavour.RAYSERVICE
        if data.get("runtime") != Cluster.Runtime.KUBERNETES:
            return data
        # An image left empty is allowed here (the cluster may be set up before its images are chosen); the cluster
        # page warns, and endpoints on it fail with that reason until an admin sets one.
        for name in ("kube_ray_image", "kube_vllm_image"):
            if any(c.isspace() for c in data.get(name) or ""):
                self.add_error(name, "An image reference has no spaces, e.g. registry.example.com/ray-llm:2.60.0.")
        host = data.get("kube_ingress_host") or ""
        if host and not DNS_SUBDOMAIN.fullmatch(host):
            self.add_error(
                "kube_ingress_host", "Give a host name only, in lowercase (e.g. llm.example.com): no https://, no path."
            )
        secret = data.get("kube_hf_token_secret") or ""
        if secret and not DNS_SUBDOMAIN.fullmatch(secret):
            self.add_error(
                "kube_hf_token_secret",
                "Give the name of a Kubernetes Secret (lowercase letters, digits, '-' and '.'), not the token itself.",
            )
        return data

    def hide_rejected_secrets(self) -> None:
        """A rejected secret_env may hold a real secret: never send it back to the browser in the page.

        Values that are proper variable names stay; anything else is blanked, so the person types the name again.
        """
        if self.is_bound and "kube_hf_token_secret" in self.errors:
            # A rejected Secret *name* is most likely the token itself, pasted into the wrong box.
            self.data = {**{key: self.data.get(key) for key in self.data}, "kube_hf_token_secret": ""}
        if not self.is_bound or "secret_env" not in self.errors:
            return
        try:
            given = json.loads(self.data.get("secret_env", ""))
        except ValueError:
            given = None
        if isinstance(given, dict):
            kept = {
                str(key): value if isinstance(value, str) and SECRET_ENV_NAME.fullmatch(value) else ""
                for key, value in given.items()
            }
            redacted = json.dumps(kept)
        else:
            redacted = "{}"
        self.data = {**self.data, "secret_env": redacted}

    def section(self, names: tuple[str, ...]) -> list[forms.BoundField]:
        return [self[name] for name in names]

    def common_fields(self) -> list[forms.BoundField]:
        return self.section(("name", "runtime", "description"))

    def ray_fields(self) -> list[forms.BoundField]:
        return self.section(self.RAY_FIELDS)

    def kubernetes_fields(self) -> list[forms.BoundField]:
        return self.section(self.KUBERNETES_FIELDS)


class ClusterInventoryForm(forms.Form):
    gpu_type = forms.ModelChoiceField(
        label="GPU type",
        queryset=GpuType.objects.order_by("sku"),
        error_messages={"invalid_choice": "Choose one of the GPU types in the list."},
    )
    count = forms.IntegerField(
        label="GPUs",
        min_value=0,
        help_text="How many GPUs of this type the cluster has. 0 removes the type from the cluster.",
        error_messages={"min_value": "The GPU count must be zero or more."},
    )
