from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import BudgetViewSet, GpuQuotaViewSet, MembershipViewSet, TeamViewSet

router = SimpleRouter()
router.register("teams", TeamViewSet, basename="teams")
router.register("memberships", MembershipViewSet, basename="memberships")
router.register("quotas", GpuQuotaViewSet, basename="quotas")
router.register("budgets", BudgetViewSet, basename="budgets")

urlpatterns = router.urls
