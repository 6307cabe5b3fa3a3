"""Metered usage and cost per endpoint (minute rows, hourly and daily rollups), budget alerts, and statements.

Money columns hold exact values: `rate` is the hourly price per GPU in force (4 places, as in the price list) and
`price_seconds` is the exact sum of rate x GPU-seconds, so cost = price_seconds / 3600 with no rounding in
between. Rounding happens only on display and on statement lines (see `money.py` and docs/metering.md).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from apps.teams.models import CURRENCY


class HistogramLayout(models.Model):
    """The finite upper bounds of a histogram's buckets (`+Inf` is implied), shared by every row that uses them."""

    bounds = ArrayField(models.FloatField())

    class Meta:
        constraints = [models.UniqueConstraint(fields=["bounds"], name="metering_layout_unique_bounds")]

    def __str__(self) -> str:
        return ", ".join(f"{b:g}" for b in self.bounds)


class Usage(models.Model):
    """What every usage row holds, whatever its period."""

    endpoint = models.ForeignKey("endpoints.Endpoint", on_delete=models.PROTECT, related_name="+")
    # The endpoint's team, copied so that team-scoped reads and statements never join through endpoints.
    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="+")
    # Finished requests (vLLM's request_success_total, every finished_reason) and the split by reason.
    requests = models.BigIntegerField(default=0)
    requests_by_reason = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    # {"ttft"|"itl"|"e2e"|"queue": [{"l": layout id, "b": [per-bucket counts], "s": sum, "c": count}]}
    histograms = models.JSONField(default=dict, blank=True)
    # Gauges, sampled at every scrape: sums and sample count give the mean, plus the maximum.
    running_sum = models.FloatField(default=0)
    waiting_sum = models.FloatField(default=0)
    kv_usage_sum = models.FloatField(default=0)
    gauge_samples = models.IntegerField(default=0)
    running_max = models.FloatField(default=0)
    waiting_max = models.FloatField(default=0)
    kv_usage_max = models.FloatField(default=0)
    metric_replicas = models.SmallIntegerField(default=0, help_text="Replicas seen in the metrics (maximum).")
    scrapes = models.IntegerField(default=0)
    # Cost: replicas x GPUs per replica held during the period, and the price in force.
    replicas = models.SmallIntegerField(default=0)
    gpus = models.IntegerField(default=0)
    gpu_seconds = models.BigIntegerField(default=0)
    rate = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True, default="")

    class Meta:
        abstract = True


class UsageMinute(Usage):
    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "minute"], name="metering_minute_unique")]
        indexes = [models.Index(fields=["minute"]), models.Index(fields=["team", "minute"])]

    def __str__(self) -> str:
        return f"endpoint {self.endpoint_id} {self.minute:%Y-%m-%d %H:%M}"


class Rollup(Usage):
    # Exact sum of rate x GPU-seconds: cost = price_seconds / 3600.
    price_seconds = models.DecimalField(max_digits=28, decimal_places=4, default=0)
    # GPU-seconds of minutes with no finished request and nothing running: idle, billed all the same.
    idle_gpu_seconds = models.BigIntegerField(default=0)
    minutes = models.IntegerField(default=0, help_text="Minute rows rolled into this one.")

    class Meta:
        abstract = True


class UsageHour(Rollup):
    """An hour (UTC) of one endpoint at one price: a price change inside the hour gives two rows."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "hour", "rate", "currency"], name="metering_hour_unique", nulls_distinct=False
            )
        ]
        indexes = [models.Index(fields=["hour"]), models.Index(fields=["team", "hour"])]

    def __str__(self) -> str:
        return f"endpoint {self.endpoint_id} {self.hour:%Y-%m-%d %H}h"


class UsageDay(Rollup):
    """A day in the statement time zone, of one endpoint at one price."""

    day = models.DateField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "day", "rate", "currency"], name="metering_day_unique", nulls_distinct=False
            )
        ]
        indexes = [models.Index(fields=["day"]), models.Index(fields=["team", "day"])]

    def __str__(self) -> str:
        return f"endpoint {self.endpoint_id} {self.day}"


class ScrapeState(models.Model):
    """Per endpoint: the last cumulative values seen per replica, and the usage summed so far in this minute."""

    endpoint = models.OneToOneField(
        "endpoints.Endpoint", on_delete=models.CASCADE, primary_key=True, related_name="scrape_state"
    )
    scraped_at = models.DateTimeField(null=True, blank=True)
    # replica key -> {"c": {flat counter: value}, "t": created timestamp or null, "seen": unix seconds}
    replicas = models.JSONField(default=dict, blank=True)
    minute = models.DateTimeField(null=True, blank=True)
    accum = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"scrape state of endpoint {self.endpoint_id}"


class ScrapeTarget(models.Model):
    """Health of one metrics source of a cluster: a /metrics URL, or the cluster's Prometheus server."""

    cluster = models.ForeignKey("inventory.Cluster", on_delete=models.CASCADE, related_name="scrape_targets")
    url = models.CharField(max_length=500)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_seconds = models.FloatField(default=0)
    last_bytes = models.IntegerField(default=0)

    class Meta:
        ordering = ["cluster__name", "url"]
        constraints = [models.UniqueConstraint(fields=["cluster", "url"], name="metering_target_unique")]

    def __str__(self) -> str:
        return self.url


class DirtyHour(models.Model):
    """An hour whose minute rows changed since it was last rolled up."""

    hour = models.DateTimeField(unique=True)
    marked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h"


class Cursor(models.Model):
    """How far a periodic job got (e.g. the last minute whose GPU time was accrued)."""

    name = models.CharField(max_length=40, unique=True)
    position = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name}: {self.position:%Y-%m-%d %H:%M}"


class BudgetAlert(models.Model):
    """A team crossed a percentage of its monthly budget. One per team, month and threshold, ever."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.DateField(help_text="First day of the month (statement time zone).")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the monthly budget.")
    spent = models.DecimalField(max_digits=16, decimal_places=4)
    budget = models.DecimalField(max_digits=16, decimal_places=4)
    forecast = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    currency = models.CharField(max_length=3, validators=[CURRENCY])
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["team", "month", "threshold"], name="metering_alert_once_per_month")
        ]

    def __str__(self) -> str:
        return f"{self.team.slug} {self.month:%Y-%m}: {self.threshold}%"


class Statement(models.Model):
    """A team's chargeback statement for one month and currency. Closed statements never change (DB trigger)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    team = models.ForeignKey("teams.Team", on_delete=models.PROTECT, related_name="statements")
    month = models.DateField(help_text="First day of the month (statement time zone).")
    currency = models.CharField(max_length=3, validators=[CURRENCY])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    time_zone = models.CharField(max_length=64)
    cost_center = models.CharField(max_length=40, blank=True, default="")
    budget_amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    budget_currency = models.CharField(max_length=3, blank=True, default="")
    total = models.DecimalField(max_digits=18, decimal_places=4, default=0)
    generated_at = models.DateTimeField()
    generated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-month", "team__slug", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["team", "month", "currency"], name="metering_statement_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.team.slug} {self.month:%Y-%m} {self.currency}"

    @property
    def is_closed(self) -> bool:
        return self.status == self.Status.CLOSED

    @property
    def variance(self) -> object:
        """Budget minus total (positive: under budget), when the budget is in the statement's currency."""
        if self.budget_amount is None or self.budget_currency != self.currency:
            return None
        return self.budget_amount - self.total


class StatementLine(models.Model):
    class Kind(models.TextChoices):
        USAGE = "usage", "Usage"
        ADJUSTMENT = "adjustment", "Adjustment"

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.USAGE)
    endpoint = models.ForeignKey(
        "endpoints.Endpoint", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    endpoint_name = models.CharField(max_length=120)
    gpu_type_sku = models.CharField("GPU type", max_length=40, blank=True, default="")
    gpu_seconds = models.BigIntegerField(default=0)
    gpu_hours = models.DecimalField("GPU-hours", max_digits=18, decimal_places=4, default=0)
    idle_gpu_hours = models.DecimalField("idle GPU-hours", max_digits=18, decimal_places=4, default=0)
    rate = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    cost = models.DecimalField(max_digits=18, decimal_places=4)
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    cost_per_million_tokens = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    adjusts_month = models.DateField(
        null=True, blank=True, help_text="For an adjustment: the closed month it corrects."
    )
    note = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["statement", "position", "id"]

    def __str__(self) -> str:
        return f"{self.endpoint_name}: {self.cost}"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.generation_tokens


class TeamMonthCost(models.Model):
    """A team's metered totals for one statement-zone month and currency, summed from the daily rollups.

    Derived data, kept so that finance's pages read a few hundred rows instead of a year of `UsageDay`: rebuilt by
    `monthly.refresh_team_months` whenever a day is rolled up. Money stays exact, as in the rollups: cost =
    price_seconds / 3600, idle cost = idle_price_seconds / 3600 (idle GPU-seconds x the rate of their row)."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="First day of the month (statement time zone).")
    currency = models.CharField(max_length=3, blank=True, default="")
    price_seconds = models.DecimalField(max_digits=28, decimal_places=4, default=0)
    idle_price_seconds = models.DecimalField(max_digits=28, decimal_places=4, default=0)
    gpu_seconds = models.BigIntegerField(default=0)
    idle_gpu_seconds = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    generation_tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "month", "currency"], name="metering_team_month_unique")]
        indexes = [models.Index(fields=["month"])]

    def __str__(self) -> str:
        return f"team {self.team_id} {self.month:%Y-%m} {self.currency}"
