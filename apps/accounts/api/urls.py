from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import ApiTokenViewSet, MeView

router = SimpleRouter()
router.register("tokens", ApiTokenViewSet, basename="tokens")

urlpatterns = [path("me/", MeView.as_view(), name="me"), *router.urls]
