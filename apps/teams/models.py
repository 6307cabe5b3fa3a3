from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

# A DNS-1123 label: the slug becomes a Kubernetes namespace and a Ray route prefix.
DNS1123_LABEL = RegexValidator(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "Use lowercase letters, digits and '-', starting and ending with a letter or digit (a DNS-1123 label).",
)

CURRENCY = RegexValidator(r"^[A-Z]{3}$", "Use a three-letter ISO 4217 code such as USD or EUR.")


def default_thresholds() -> list[int]:
    return [80, 100]


class Team(models.Model):
    slug = models.CharField(max_length=40, unique=True, validators=[DNS1123_LABEL])
    name = models.CharField(max_length=120)

    class ApprovalPolicy(models.TextChoices):
        AUTO = "auto", "Approve requests that fit the quota at once"
        REVIEW = "review", "An admin reviews every request"

    cost_center = models.CharField("cost-center code", max_length=40, blank=True, default="")
    approval_policy = models.CharField(
        max_length=10,
        choices=ApprovalPolicy.choices,
        default=ApprovalPolicy.AUTO,
        help_text="What happens to an endpoint request that fits the team's free GPU quota.",
    )
    # Budget policy (apps.metering): refuse new endpoint requests while this month's cost is at or over budget.
    block_requests_over_budget = models.BooleanField(
        "block requests over budget",
        default=False,
        help_text="Refuse new endpoint requests while this month's metered cost is at or over the monthly budget.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        LEAD = "lead", "Team lead"
        MEMBER = "member", "Member"

    class Source(models.TextChoices):
        MANUAL = "manual", "Added in the portal"
        IDENTITY_PROVIDER = "idp", "From the identity provider"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team__slug", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="teams_membership_unique_user_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class GpuQuota(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="quotas")
    gpu_type = models.ForeignKey("inventory.GpuType", on_delete=models.PROTECT, related_name="quotas")
    limit = models.PositiveIntegerField("limit (GPUs)", validators=[MaxValueValidator(100_000)])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__slug", "gpu_type__sku"]
        constraints = [
            models.UniqueConstraint(fields=["team", "gpu_type"], name="teams_gpuquota_unique_team_type"),
            models.CheckConstraint(condition=models.Q(limit__gte=0), name="teams_gpuquota_limit_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.team.slug}: {self.limit} x {self.gpu_type.sku}"


class Budget(models.Model):
    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="budget")
    monthly_amount = models.DecimalField(max_digits=14, decimal_places=2, validators=[MinValueValidator(Decimal("0"))])
    currency = models.CharField(max_length=3, default="USD", validators=[CURRENCY])
    alert_thresholds = ArrayField(
        models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(1000)]),
        default=default_thresholds,
        help_text="Percentages of the monthly amount that raise an alert.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team__slug"]
        constraints = [
            models.CheckConstraint(condition=models.Q(monthly_amount__gte=0), name="teams_budget_amount_non_negative")
        ]

    def __str__(self) -> str:
        return f"{self.team.slug}: {self.monthly_amount} {self.currency}/month"
