from __future__ import annotations

from rest_framework import serializers

from apps.audit.models import AuditEvent
from apps.teams.models import Team


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    actor = serializers.CharField(source="actor_label", read_only=True, help_text="Username at the time, or 'system'.")
    team: serializers.SlugRelatedField[Team] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True, help_text="Team slug."
    )

    class Meta:
        model = AuditEvent
        fields = (
            "id",
            "created_at",
            "actor",
            "action",
            "target_type",
            "target_id",
            "target_label",
            "team",
            "before",
            "after",
            "source_ip",
        )
        read_only_fields = fields
