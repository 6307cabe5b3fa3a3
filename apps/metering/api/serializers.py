from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from rest_framework import serializers

from apps.metering.models import Statement, StatementLine
from apps.metering.selectors import EndpointUsage
from apps.teams.models import Team


class StatementLineSerializer(serializers.ModelSerializer[StatementLine]):
    endpoint = serializers.IntegerField(source="endpoint_id", allow_null=True, read_only=True)
    adjusts_month = serializers.DateField(format="%Y-%m", allow_null=True, read_only=True)

    class Meta:
        model = StatementLine
        fields = [
            "kind",
            "endpoint",
            "endpoint_name",
            "gpu_type_sku",
            "gpu_hours",
            "idle_gpu_hours",
            "rate",
            "cost",
            "prompt_tokens",
            "generation_tokens",
            "requests",
            "cost_per_million_tokens",
            "adjusts_month",
            "note",
        ]
        read_only_fields = fields


class StatementSerializer(serializers.ModelSerializer[Statement]):
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    team_name = serializers.CharField(source="team.name", read_only=True)
    month = serializers.DateField(format="%Y-%m", read_only=True)
    variance = serializers.DecimalField(max_digits=18, decimal_places=4, read_only=True, allow_null=True)
    lines = StatementLineSerializer(many=True, read_only=True)

    class Meta:
        model = Statement
        fields = [
            "id",
            "team",
            "team_name",
            "cost_center",
            "month",
            "currency",
            "status",
            "time_zone",
            "total",
            "budget_amount",
            "budget_currency",
            "variance",
            "generated_at",
            "closed_at",
            "lines",
        ]
        read_only_fields = fields


class StatementSummarySerializer(StatementSerializer):
    class Meta(StatementSerializer.Meta):
        fields = [f for f in StatementSerializer.Meta.fields if f != "lines"]
        read_only_fields = fields


class MonthSerializer(serializers.Serializer[object]):
    month = serializers.RegexField(r"^\d{4}-\d{2}$", help_text="YYYY-MM")


class LatencySerializer(serializers.Serializer[object]):
    p50 = serializers.FloatField(allow_null=True, help_text="seconds")
    p95 = serializers.FloatField(allow_null=True, help_text="seconds")


class EndpointUsageSerializer(serializers.Serializer[object]):
    endpoint = serializers.IntegerField(source="endpoint_id")
    name = serializers.CharField()
    team = serializers.CharField(source="team_slug")
    gpu_type = serializers.CharField()
    gpu_hours = serializers.FloatField()
    idle_gpu_hours = serializers.FloatField()
    cost = serializers.SerializerMethodField(help_text="currency -> exact cost shown to 4 places")
    cost_per_million_tokens = serializers.SerializerMethodField(help_text="currency -> cost per 1M tokens, 4 places")
    prompt_tokens = serializers.IntegerField()
    generation_tokens = serializers.IntegerField()
    requests = serializers.IntegerField()
    tokens_per_second = serializers.FloatField(allow_null=True)
    utilisation = serializers.FloatField(allow_null=True)
    kv_cache_usage = serializers.FloatField(allow_null=True, source="kv_usage")
    latency = serializers.DictField(child=LatencySerializer(), source="percentiles")

    def get_cost(self, row: EndpointUsage) -> dict[str, str | None]:
        return {currency: four_places(cost) for currency, cost in sorted(row.costs.items())}

    def get_cost_per_million_tokens(self, row: EndpointUsage) -> dict[str, str | None]:
        return {currency: four_places(row.cost_per_million(currency)) for currency in sorted(row.costs)}


def four_places(value: Fraction | None) -> str | None:
    if value is None:
        return None
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return str(exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN))
