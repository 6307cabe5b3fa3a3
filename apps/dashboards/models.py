"""Precomputed per-endpoint summaries behind the frontier page (see `summaries.py`).

Merging the latency histograms of every endpoint over 30 days on each page view is far too slow, so the worker
recomputes one row per endpoint and window every few minutes and the page reads only these rows.
"""

from __future__ import annotations

from fractions import Fraction

from django.db import models

from apps.metering.money import exact_cost


class SummaryWindow(models.TextChoices):
    DAY = "24h", "24 hours"
    WEEK = "7d", "7 days"
    MONTH = "30d", "30 days"


class SummaryRun(models.Model):
    """When a window's summaries were last computed, and over which period: "as of" on the page, and whether the
    refresh has ever run at all (no rows and no run: say so, rather than "no traffic")."""

    window = models.CharField(max_length=4, choices=SummaryWindow.choices, unique=True)
    start = models.DateTimeField()
    end = models.DateTimeField()
    computed_at = models.DateTimeField()
    endpoints = models.PositiveIntegerField(default=0, help_text="Summary rows written.")

    def __str__(self) -> str:
        return f"{self.window} as of {self.computed_at:%Y-%m-%d %H:%M}"


class EndpointSummary(models.Model):
    """One endpoint's usage, cost and latency over one window, as of `computed_at`."""

    endpoint = models.ForeignKey("endpoints.Endpoint", on_delete=models.CASCADE, related_name="+")
    # The endpoint's team, copied so that the page scopes rows without joining through endpoints.
    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    window = models.CharField(max_length=4, choices=SummaryWindow.choices)
    computed_at = models.DateTimeField()
    # "" when the window has no priced usage, or usage in more than one currency (`mixed_currency`).
    currency = models.CharField(max_length=3, blank=True, default="")
    mixed_currency = models.BooleanField(default=False)
    # Exact: cost = price_seconds / 3600 (metering.money.exact_cost), as in the rollups.
    price_seconds = models.DecimalField(max_digits=28, decimal_places=4, default=0)
    # Cost per 1M prompt + generation tokens, rounded for plotting and export; null without tokens or price.
    cost_per_million = models.DecimalField(max_digits=24, decimal_places=6, null=True, blank=True)
    gpu_seconds = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    p50_e2e = models.FloatField(null=True, blank=True, help_text="Seconds.")
    p95_e2e = models.FloatField(null=True, blank=True, help_text="Seconds.")
    p95_ttft = models.FloatField(null=True, blank=True, help_text="Seconds.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "window"], name="dashboards_summary_unique_endpoint_window")
        ]
        indexes = [models.Index(fields=["window", "team"])]

    def __str__(self) -> str:
        return f"endpoint {self.endpoint_id} {self.window}"

    @property
    def cost(self) -> Fraction:
        return exact_cost(self.price_seconds)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generation_tokens
