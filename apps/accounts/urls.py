from __future__ import annotations

from django.urls import path

from . import views
from .sso import views as sso_views

app_name = "accounts"
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    # POST only (the header's "Sign out" button); after single sign-on it goes on to the provider's sign-out.
    path("logout/", sso_views.logout, name="logout"),
    path("sso/login/", sso_views.sso_login, name="sso_login"),
    path("sso/callback/", sso_views.sso_callback, name="sso_callback"),
    path("sso/groups/", sso_views.group_mapping_list, name="group_mappings"),
    path("sso/groups/new/", sso_views.group_mapping_create, name="group_mapping_create"),
    path("sso/groups/<int:pk>/edit/", sso_views.group_mapping_edit, name="group_mapping_edit"),
    path("sso/groups/<int:pk>/delete/", sso_views.group_mapping_delete, name="group_mapping_delete"),
    path("account/tokens/", views.api_tokens, name="tokens"),
    path("account/tokens/<int:token_id>/revoke/", views.api_token_revoke_view, name="token_revoke"),
]
