from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from apps.teams.models import CURRENCY

ENV_VAR_NAME = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_]*$", "Give the name of an environment variable (letters, digits, underscore)."
)


class GpuType(models.Model):
    sku = models.CharField("SKU", max_length=40, unique=True, help_text="e.g. H100-80GB")
    memory_gib = models.PositiveIntegerField("memory (GiB)", validators=[MinValueValidator(1)])
    node_selector_label = models.CharField(
        max_length=120, blank=True, default="", help_text="Kubernetes node label key, e.g. nvidia.com/gpu.product"
    )
    node_selector_value = models.CharField(max_length=120, blank=True, default="")
    ray_accelerator_type = models.CharField(
        "Ray accelerator_type", max_length=60, blank=True, default="", help_text="e.g. H100, A100-80G"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return self.sku


class GpuPrice(models.Model):
    """Hourly price per GPU of a type, in force from `effective_from` until the next price starts.

    Rows are never edited after they are in force, so past costs are computed with the price of the time
    (`inventory.selectors.gpu_price_at`).
    """

    gpu_type = models.ForeignKey(GpuType, on_delete=models.CASCADE, related_name="prices")
    hourly_price = models.DecimalField(
        "hourly price per GPU", max_digits=12, decimal_places=4, validators=[MinValueValidator(Decimal("0"))]
    )
    currency = models.CharField(max_length=3, default="USD", validators=[CURRENCY])
    effective_from = models.DateTimeField()
    is_example = models.BooleanField(default=False, help_text="Demo data: an example price, not a real quote.")
    note = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["gpu_type__sku", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["gpu_type", "effective_from"], name="inventory_gpuprice_unique_start"),
            models.CheckConstraint(condition=models.Q(hourly_price__gte=0), name="inventory_gpuprice_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_type.sku} {self.hourly_price} {self.currency}/h from {self.effective_from:%Y-%m-%d %H:%M}"


class Cluster(models.Model):
    class Runtime(models.TextChoices):
        RAY = "ray", "Ray"
        KUBERNETES = "kubernetes", "Kubernetes"

    class KubeAuth(models.TextChoices):
        IN_CLUSTER = "in_cluster", "In-cluster service account"
        KUBECONFIG = "kubeconfig", "Kubeconfig file named by an environment variable"

    name = models.CharField(max_length=60, unique=True)
    runtime = models.CharField(max_length=20, choices=Runtime.choices)
    description = models.CharField(max_length=300, blank=True, default="")
    ray_dashboard_url = models.URLField("Ray dashboard URL", blank=True, default="")
    kube_auth = models.CharField(max_length=20, choices=KubeAuth.choices, blank=True, default="")
    kubeconfig_env = models.CharField(
        "kubeconfig variable",
        max_length=100,
        blank=True,
        default="",
        validators=[ENV_VAR_NAME],
        help_text="Environment variable holding the kubeconfig path.",
    )
    kube_context = models.CharField(max_length=200, blank=True, default="")
    ray_serve_url = models.URLField(
        "Ray Serve URL", blank=True, default="", help_text="Where Serve's HTTP proxy answers, e.g. http://10.0.0.5:8000"
    )
    cpu_only = models.BooleanField(
        "CPU-only cluster",
        default=False,
        help_text="Replicas get CPU bundles instead of GPUs (a laptop or CI); its 'GPU' type counts CPUs.",
    )

    # Kubernetes runtime (apps.endpoints.runtime.kubernetes).
    class KubeFlavour(models.TextChoices):
        RAYSERVICE = "rayservice", "KubeRay RayService per endpoint"
        DEPLOYMENT = "deployment", "Plain vLLM Deployment per endpoint (no KubeRay)"

    kube_flavour = models.CharField(
        "engine flavour", max_length=20, choices=KubeFlavour.choices, default=KubeFlavour.RAYSERVICE
    )
    kube_ray_image = models.CharField(
        "Ray image", max_length=300, blank=True, default="", help_text="Image for RayService head and workers."
    )
    kube_vllm_image = models.CharField(
        "vLLM image", max_length=300, blank=True, default="", help_text="Image for the plain Deployment flavour."
    )
    kube_ingress_host = models.CharField(
        "ingress host", max_length=253, blank=True, default="", help_text="External host for endpoint URLs, if any."
    )
    kube_hf_token_secret = models.CharField(
        "model-hub token Secret",
        max_length=253,
        blank=True,
        default="",
        help_text="Name of a Secret (key HF_TOKEN) in each team namespace holding the model-hub token.",
    )

    # Metering (apps.metering): where endpoint metrics come from.
    class MetricsSource(models.TextChoices):
        DIRECT = "direct", "Scrape the serving processes' /metrics"
        PROMETHEUS = "prometheus", "Query an existing Prometheus server"

    metrics_source = models.CharField(max_length=12, choices=MetricsSource.choices, default=MetricsSource.DIRECT)
    metrics_urls = models.TextField(
        "metrics URLs",
        blank=True,
        default="",
        help_text="Direct scraping of a Ray cluster: its nodes' metrics export URLs, one per line.",
    )
    prometheus_url = models.URLField("Prometheus URL", blank=True, default="")
    last_reconciled_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Secrets are never stored here: only the names of environment variables that hold them.
    secret_env = models.JSONField(
        default=dict,
        blank=True,
        help_text='Secret name -> environment variable name, e.g. {"hf_token": "PARETO_HF_TOKEN"}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ClusterGpuInventory(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="inventory")
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="inventory")
    count = models.PositiveIntegerField("GPUs")

    class Meta:
        ordering = ["cluster__name", "gpu_type__sku"]
        verbose_name = "cluster GPU inventory"
        verbose_name_plural = "cluster GPU inventory"
        constraints = [
            models.UniqueConstraint(fields=["cluster", "gpu_type"], name="inventory_cluster_gpu_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.count} x {self.gpu_type.sku}"
