from __future__ import annotations

from rest_framework import serializers

from apps.accounts.models import User
from apps.inventory.models import GpuType
from apps.teams.models import Budget, GpuQuota, Membership, Team


class TeamSerializer(serializers.ModelSerializer[Team]):
    class Meta:
        model = Team
        fields = ("id", "slug", "name", "cost_center", "created_at")
        read_only_fields: tuple[str, ...] = ("id", "created_at")


class TeamUpdateSerializer(TeamSerializer):
    """The slug names a Kubernetes namespace and routes, so it never changes after creation."""

    class Meta(TeamSerializer.Meta):
        read_only_fields = ("id", "slug", "created_at")


def _team_field() -> serializers.SlugRelatedField[Team]:
    return serializers.SlugRelatedField(slug_field="slug", queryset=Team.objects.all(), help_text="Team slug.")


def _gpu_type_field() -> serializers.SlugRelatedField[GpuType]:
    return serializers.SlugRelatedField(slug_field="sku", queryset=GpuType.objects.all(), help_text="GPU type SKU.")


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    team = _team_field()
    user = serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.filter(is_active=True), help_text="Username."
    )

    class Meta:
        model = Membership
        fields = ("id", "team", "user", "role", "source", "created_at")
        read_only_fields = ("id", "source", "created_at")
        # "Already a member" is the service's rule and answers on the `user` field.
        validators: list = []


class MembershipRoleSerializer(MembershipSerializer):
    """Changing a membership changes its role only."""

    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[assignment]
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)  # type: ignore[assignment]


class GpuQuotaSerializer(serializers.ModelSerializer[GpuQuota]):
    team = _team_field()
    gpu_type = _gpu_type_field()

    class Meta:
        model = GpuQuota
        fields = ("id", "team", "gpu_type", "limit", "updated_at")
        read_only_fields = ("id", "updated_at")
        # Creating sets the quota of (team, GPU type), replacing an existing one: no uniqueness error.
        validators: list = []


class GpuQuotaLimitSerializer(GpuQuotaSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[assignment]
    gpu_type = serializers.SlugRelatedField(slug_field="sku", read_only=True)  # type: ignore[assignment]


class BudgetSerializer(serializers.ModelSerializer[Budget]):
    team = _team_field()
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000),
        required=False,
        help_text="Percentages of the monthly amount that raise an alert, e.g. [80, 100].",
    )

    class Meta:
        model = Budget
        fields = ("id", "team", "monthly_amount", "currency", "alert_thresholds", "updated_at")
        read_only_fields = ("id", "updated_at")


class BudgetUpdateSerializer(BudgetSerializer):
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)  # type: ignore[assignment]
