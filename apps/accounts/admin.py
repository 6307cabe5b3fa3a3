from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as DjangoGroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from apps.accounts.permissions import access_for
from apps.audit.services import audit_record
from apps.core.admin import AuditedModelAdmin
from apps.core.api import actor_from

from .models import ApiToken, GroupTeamMapping, User
from .services import api_token_revoke

# Django's groups only grant admin-site permissions; they are re-registered so that changes to them are audited.
admin.site.unregister(Group)


@admin.register(Group)
class GroupAdmin(AuditedModelAdmin, DjangoGroupAdmin):
    audit_prefix = "group"


@admin.register(User)
class UserAdmin(AuditedModelAdmin, DjangoUserAdmin):
    # The password hash never goes into an audit snapshot; last_login changes on every sign-in.
    audit_exclude = ("password", "last_login")
    # Kept by the system; editable, the admin form would also drop their microseconds on every save.
    readonly_fields = ("last_login", "date_joined")
    list_display = ("username", "email", "is_platform_admin", "is_finance", "is_active", "is_staff", "identity_subject")
    list_filter = ("is_platform_admin", "is_finance", "is_active", "is_staff", "is_superuser")
    search_fields = ("username", "email", "first_name", "last_name", "identity_subject")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Platform roles", {"fields": ("is_platform_admin", "is_finance")}),
        (
            "Identity provider",
            {
                "fields": ("identity_issuer", "identity_subject"),
                "description": "Set by single sign-on (Entra: tenant id and object id). Leave empty for local users.",
            },
        ),
    )

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:  # the form was valid and saved
            user = self.get_object(request, id)
            if user is not None:
                audit_record(actor=actor_from(request), action="user.admin_password_change", target=user)
        return response


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedModelAdmin):
    """Tokens are made by their owners (the raw value is shown once); here they are listed, revoked or deleted."""

    list_display = ("name", "user", "hint", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "hint")
    readonly_fields = ("user", "name", "key_hash", "hint", "created_at", "expires_at", "last_used_at", "revoked_at")
    fields = readonly_fields
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return access_for(request.user).can_administer()

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        actor = actor_from(request)
        revoked = [token for token in queryset if token.revoked_at is None]
        for token in revoked:
            api_token_revoke(actor=actor, token=token)
        self.message_user(request, f"Revoked {len(revoked)} token(s).", messages.SUCCESS)


@admin.register(GroupTeamMapping)
class GroupTeamMappingAdmin(AuditedModelAdmin):
    """Entra ID group -> team and role, for single sign-on. The portal's page is /sso/groups/."""

    audit_prefix = "group_mapping"
    list_display = ("group_id", "label", "team", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("team",)
    search_fields = ("group_id", "label", "team__slug", "team__name")
    fields = ("group_id", "label", "team", "role")
