from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

from .views import ChargebackGenerateView, ChargebackView, StatementViewSet, UsageSeriesView, UsageView

router = SimpleRouter()
router.register("statements", StatementViewSet, basename="statements")

urlpatterns = [
    *format_suffix_patterns(
        [path("chargeback/", ChargebackView.as_view(), name="chargeback")], allowed=["json", "csv"]
    ),
    path("chargeback/generate/", ChargebackGenerateView.as_view(), name="chargeback-generate"),
    path("usage/", UsageView.as_view(), name="usage"),
    path("usage/endpoints/<int:pk>/", UsageSeriesView.as_view(), name="usage-endpoint"),
    *router.urls,
]
