from __future__ import annotations

app_name = "inventory"
urlpatterns: list = []
