from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import EndpointViewSet, QuotaRequestViewSet

router = SimpleRouter()
router.register("endpoints", EndpointViewSet, basename="endpoints")
router.register("quota-requests", QuotaRequestViewSet, basename="quota-requests")

urlpatterns = router.urls
