from __future__ import annotations

import pytest
import yaml
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db

RESOURCES = [
    "catalog-models",
    "teams",
    "memberships",
    "gpu-types",
    "gpu-prices",
    "clusters",
    "quotas",
    "budgets",
    "audit-events",
    "tokens",
]


def test_schema_is_served_to_signed_in_people(client_for, member_user):
    response = client_for(member_user).get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for resource in RESOURCES:
        assert f"/api/v1/{resource}/" in paths
    assert "/api/v1/me/" in paths
    assert "apiToken" in response.json()["components"]["securitySchemes"]


def test_schema_needs_sign_in(client_for):
    assert client_for(None).get(reverse("api-schema")).status_code in (401, 403)


def test_swagger_ui_comes_from_our_static_files(client_for, member_user):
    response = client_for(member_user).get(reverse("api-docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    # The sidecar app ships the file that the page loads, so collectstatic serves it from our own host.
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js") is not None


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    # --fail-on-warn turns any warning or error (an unresolvable serializer, a missing type hint) into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["info"]["title"] == "Pareto API"
    assert "/api/v1/clusters/{id}/inventory/" in schema["paths"]


def test_docs_need_sign_in(client_for):
    assert client_for(None).get(reverse("api-docs")).status_code in (401, 403)
