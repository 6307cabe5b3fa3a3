from __future__ import annotations

app_name = "teams"
urlpatterns: list = []
