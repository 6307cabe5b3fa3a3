from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import ClusterViewSet, GpuPriceViewSet, GpuTypeViewSet

router = SimpleRouter()
router.register("gpu-types", GpuTypeViewSet, basename="gpu-types")
router.register("gpu-prices", GpuPriceViewSet, basename="gpu-prices")
router.register("clusters", ClusterViewSet, basename="clusters")

urlpatterns = router.urls
