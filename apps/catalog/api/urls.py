from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import CatalogModelViewSet

router = SimpleRouter()
router.register("catalog-models", CatalogModelViewSet, basename="catalog-models")

urlpatterns = router.urls
