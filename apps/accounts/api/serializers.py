from __future__ import annotations

from rest_framework import serializers

from apps.accounts.models import ApiToken, User
from apps.teams.models import Membership, Team


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    """A personal token as listed: never the token itself, only its first characters (`hint`)."""

    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiToken
        fields: tuple[str, ...] = (
            "id",
            "name",
            "hint",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        )
        read_only_fields = ("id", "hint", "created_at", "last_used_at", "revoked_at")


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    """The answer to creating a token: the only time the raw token is shown."""

    token = serializers.CharField(
        read_only=True, help_text="The token. Shown once: store it now, Pareto keeps only its hash."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = (*ApiTokenSerializer.Meta.fields, "token")


class MyMembershipSerializer(serializers.ModelSerializer[Membership]):
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    team_name = serializers.CharField(source="team.name", read_only=True)

    class Meta:
        model = Membership
        fields = ("team", "team_name", "role", "source")
        read_only_fields = fields


class MeSerializer(serializers.ModelSerializer[User]):
    platform_roles = serializers.ListField(child=serializers.ChoiceField(choices=["admin", "finance"]), read_only=True)
    memberships = MyMembershipSerializer(many=True, read_only=True)

    class Meta:
        model = User
        fields = ("id", "username", "email", "first_name", "last_name", "platform_roles", "memberships")
        read_only_fields = fields
