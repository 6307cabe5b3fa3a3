from __future__ import annotations

from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class CatalogModel(models.Model):
    class Status(models.TextChoices):
        APPROVED = "approved", "Approved"
        DEPRECATED = "deprecated", "Deprecated"
        BLOCKED = "blocked", "Blocked"

    name = models.CharField(max_length=120, unique=True)
    source = models.CharField(max_length=500, help_text="A model-hub id (org/name) or an absolute local path.")
    family = models.CharField(max_length=60, blank=True, default="")
    parameter_count = models.BigIntegerField(validators=[MinValueValidator(1)], help_text="Parameters, e.g. 8000000000")
    context_length = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    license = models.CharField(max_length=120, blank=True, default="")
    dtype = models.CharField(
        max_length=40, default="bfloat16", help_text="dtype or quantization, e.g. bfloat16, fp8, awq"
    )
    num_layers = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    hidden_size = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    num_attention_heads = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    num_kv_heads = models.PositiveIntegerField("KV heads", validators=[MinValueValidator(1)])
    head_dim = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    quality_score = models.DecimalField(
        max_digits=6,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Optional, 0-100.",
    )
    quality_source = models.CharField(max_length=200, blank=True, default="", help_text="Where the score comes from.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.APPROVED)
    recommended_gpu_type = models.ForeignKey(
        "inventory.GpuType", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    recommended_gpu_count = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    default_engine_args = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(num_kv_heads__lte=models.F("num_attention_heads")),
                name="catalog_model_kv_heads_le_heads",
                violation_error_message="KV heads cannot exceed attention heads.",
            ),
        ]

    def __str__(self) -> str:
        return self.name
