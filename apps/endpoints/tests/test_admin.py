"""Endpoints, operations and quota requests in the Django admin: platform admins look; state is never edited."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.core.tests.adminform import page_data, submit, superuser
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.endpoints.tests.factories import EndpointFactory, QuotaRequestFactory


@pytest.fixture
def root(db):
    return superuser()


@pytest.fixture
def endpoint(team_a):
    endpoint = EndpointFactory(team=team_a, name="chat", state=Endpoint.State.READY)
    Operation.objects.create(cluster=endpoint.cluster, endpoint=endpoint, kind="apply", state="succeeded")
    return endpoint


def test_lists_and_pages_open_for_a_platform_admin(client_for, root, endpoint, team_a):
    quota_request = QuotaRequestFactory(team=team_a)
    client = client_for(root)
    operation = Operation.objects.get()
    for name, obj in (("endpoint", endpoint), ("operation", operation), ("quotarequest", quota_request)):
        assert client.get(reverse(f"admin:endpoints_{name}_changelist")).status_code == 200, name
        assert client.get(reverse(f"admin:endpoints_{name}_change", args=[obj.pk])).status_code == 200, name


def test_rows_are_never_added_or_deleted_here(client_for, root, endpoint, team_a):
    quota_request = QuotaRequestFactory(team=team_a)
    client = client_for(root)
    operation = Operation.objects.get()
    for name, obj in (("endpoint", endpoint), ("operation", operation), ("quotarequest", quota_request)):
        assert client.get(reverse(f"admin:endpoints_{name}_add")).status_code == 403, name
        delete = reverse(f"admin:endpoints_{name}_delete", args=[obj.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403, name
    assert Endpoint.objects.count() == Operation.objects.count() == QuotaRequest.objects.count() == 1


def test_state_is_read_only_and_a_deadline_change_is_audited(client_for, root, endpoint):
    client = client_for(root)
    url = reverse("admin:endpoints_endpoint_change", args=[endpoint.pk])
    page = client.get(url)
    assert set(page.context["adminform"].form.fields) == {"deadline_at"}
    deadline = timezone.now().replace(microsecond=0) + dt.timedelta(hours=2)
    local = timezone.localtime(deadline)
    response = submit(
        client,
        url,
        deadline_at_0=local.strftime("%Y-%m-%d"),
        deadline_at_1=local.strftime("%H:%M:%S"),
        state="deleted",  # not a field of the form: ignored
        max_replicas="64",
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.max_replicas, endpoint.deadline_at) == ("ready", 1, deadline)
    event = AuditEvent.objects.get(action="endpoint.admin_update")
    assert event.team_id == endpoint.team_id and set(event.after) == {"deadline_at"}


def test_quota_request_state_cannot_be_changed_here(client_for, root, team_a):
    quota_request = QuotaRequestFactory(team=team_a)
    client = client_for(root)
    url = reverse("admin:endpoints_quotarequest_change", args=[quota_request.pk])
    page = client.get(url)
    data = page_data(page)
    data["state"] = "approved"
    assert client.post(url, data).status_code == 403
    quota_request.refresh_from_db()
    assert quota_request.state == "pending"
    assert not AuditEvent.objects.exists()


def test_staff_without_the_platform_admin_role_sees_nothing(client_for, endpoint):
    staff = UserFactory(username="staff", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="endpoints"))
    client = client_for(staff)
    assert client.get(reverse("admin:endpoints_endpoint_changelist")).status_code == 403
    assert client.get(reverse("admin:endpoints_endpoint_change", args=[endpoint.pk])).status_code == 403
