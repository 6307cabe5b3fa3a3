from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.teams.api.urls")),
    path("", include("apps.inventory.api.urls")),
    path("", include("apps.catalog.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.endpoints.api.urls")),
    path("", include("apps.metering.api.urls")),
]

urlpatterns = [
    path("", include("apps.core.urls")),
    path("", include("apps.accounts.urls")),
    path("teams/", include("apps.teams.urls")),
    path("inventory/", include("apps.inventory.urls")),
    path("catalog/", include("apps.catalog.urls")),
    path("audit/", include("apps.audit.urls")),
    path("endpoints/", include("apps.endpoints.urls")),
    path("metering/", include("apps.metering.urls")),
    path("dashboards/", include("apps.dashboards.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
