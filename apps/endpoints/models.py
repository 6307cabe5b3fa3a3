from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.teams.models import DNS1123_LABEL

# Ray application names that Pareto owns start with this; the reconciler removes such an application when no
# endpoint wants it, and leaves every other application on the cluster alone.
APP_PREFIX = "pareto-"
REPLICAS = [MinValueValidator(1), MaxValueValidator(512)]


class Endpoint(models.Model):
    class State(models.TextChoices):
        PENDING_APPROVAL = "pending_approval", "Waiting for approval"
        APPROVED = "approved", "Approved"
        PROVISIONING = "provisioning", "Provisioning"
        READY = "ready", "Ready"
        UPDATING = "updating", "Updating"
        FAILED = "failed", "Failed"
        DELETING = "deleting", "Deleting"
        DELETED = "deleted", "Deleted"
        REJECTED = "rejected", "Rejected"

    # States in which the endpoint holds its GPUs against the team's quota.
    RESERVING = (State.APPROVED, State.PROVISIONING, State.READY, State.UPDATING, State.DELETING)
    # States in which the endpoint's application belongs on its cluster.
    DEPLOYED = (State.APPROVED, State.PROVISIONING, State.READY, State.UPDATING)
    # States in which Pareto is waiting for the runtime to report back.
    IN_TRANSIT = (State.PROVISIONING, State.UPDATING, State.DELETING)
    # Finished: the name may be used again.
    FINAL = (State.DELETED, State.REJECTED)

    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="endpoints")
    name = models.CharField(max_length=40, validators=[DNS1123_LABEL])
    model = models.ForeignKey("catalog.CatalogModel", on_delete=models.PROTECT, related_name="endpoints")
    cluster = models.ForeignKey("inventory.Cluster", on_delete=models.PROTECT, related_name="endpoints")
    gpu_type = models.ForeignKey("inventory.GpuType", on_delete=models.PROTECT, related_name="endpoints")
    gpus_per_replica = models.PositiveSmallIntegerField(
        "GPUs per replica",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Tensor-parallel size. On a CPU-only cluster: CPUs per replica.",
    )
    min_replicas = models.PositiveSmallIntegerField(default=1, validators=REPLICAS)
    max_replicas = models.PositiveSmallIntegerField(default=1, validators=REPLICAS)
    max_model_len = models.PositiveIntegerField("max context length", validators=[MinValueValidator(16)])
    engine_args = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING_APPROVAL, db_index=True)
    state_message = models.TextField(blank=True, default="", help_text="Why the endpoint is in its state.")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The spec version the portal wants, and the one last seen running: an update bumps `generation`.
    generation = models.PositiveIntegerField(default=1)
    observed_generation = models.PositiveIntegerField(default=0)
    observed_replicas = models.PositiveSmallIntegerField(default=0)
    base_url = models.CharField(max_length=500, blank=True, default="")
    deadline_at = models.DateTimeField(null=True, blank=True, help_text="Pareto's own limit for the current rollout.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["team__slug", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"],
                condition=~models.Q(state__in=["deleted", "rejected"]),
                name="endpoints_endpoint_unique_live_name",
                violation_error_message="The team already has an endpoint with this name.",
            ),
            models.CheckConstraint(
                condition=models.Q(min_replicas__lte=models.F("max_replicas")),
                name="endpoints_endpoint_min_le_max",
                violation_error_message="Minimum replicas cannot exceed maximum replicas.",
            ),
        ]
        indexes = [models.Index(fields=["cluster", "state"])]

    def __str__(self) -> str:
        return f"{self.team.slug}/{self.name}"

    @property
    def reserved_gpus(self) -> int:
        return self.gpus_per_replica * self.max_replicas

    @property
    def app_name(self) -> str:
        """The Ray Serve application (and Kubernetes object) name: stable for the endpoint's whole life."""
        return f"{APP_PREFIX}{self.pk}"

    @property
    def route_prefix(self) -> str:
        return f"/{self.team.slug}/{self.name}"

    @property
    def served_model_id(self) -> str:
        """The OpenAI `model` name clients send. Unique per endpoint, so metrics can be attributed to it."""
        return f"{self.team.slug}-{self.name}-{self.pk}"

    @property
    def holds_reservation(self) -> bool:
        return self.state in self.RESERVING


class Operation(models.Model):
    """One action on a cluster, with its timings, attempts and what the runtime said."""

    class Kind(models.TextChoices):
        APPLY = "apply", "Apply"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"
        RECONCILE = "reconcile", "Reconcile"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    OPEN = (State.PENDING, State.RUNNING)

    cluster = models.ForeignKey("inventory.Cluster", on_delete=models.CASCADE, related_name="operations")
    endpoint = models.ForeignKey(Endpoint, null=True, blank=True, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-created_at"]), models.Index(fields=["state", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.endpoint or self.cluster} ({self.state})"


class QuotaRequest(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="quota_requests")
    gpu_type = models.ForeignKey("inventory.GpuType", on_delete=models.PROTECT, related_name="+")
    requested_limit = models.PositiveIntegerField(
        "new limit (GPUs)", validators=[MinValueValidator(1), MaxValueValidator(100_000)]
    )
    justification = models.TextField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING, db_index=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.team.slug}: {self.requested_limit} x {self.gpu_type.sku} ({self.state})"
