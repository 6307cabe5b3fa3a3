"""/api/v1/endpoints/: scoped reads, requests through the service, actions by role, errors as JSON by field.

Cluster work is only queued (captured on-commit callbacks are not run), so these tests assert the pending
Operation rather than anything on Ray."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.tests.factories import UserFactory
from apps.audit.models import AuditEvent
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.tests.factories import EndpointFactory
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuPriceFactory, GpuTypeFactory
from apps.teams.models import GpuQuota, Team
from apps.teams.tests.factories import GpuQuotaFactory

LIST = reverse("api:endpoints-list")


@pytest.fixture
def world(team_a, team_b, admin_user, finance_user, lead_user, member_user, other_lead):
    gpu = GpuTypeFactory(sku="H100-80GB")
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.5000"))
    cluster = ClusterFactory(name="ray-a")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=32)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu)
    return {"gpu": gpu, "cluster": cluster, "model": model, "team": team_a}


def make_endpoint(world, team: Team | None = None, **kw) -> Endpoint:
    kw.setdefault("requested_by", UserFactory())
    for name in ("model", "cluster"):
        kw.setdefault(name, world[name])
    kw.setdefault("gpu_type", world["gpu"])
    return EndpointFactory(team=team or world["team"], **kw)


def detail(endpoint: Endpoint, action: str = "") -> str:
    if action:
        return reverse(f"api:endpoints-{action}", args=[endpoint.pk])
    return reverse("api:endpoints-detail", args=[endpoint.pk])


def state() -> tuple:
    return (
        list(Endpoint.objects.order_by("pk").values_list("pk", "state", "max_replicas", "engine_args", "generation")),
        list(Operation.objects.order_by("pk").values_list("pk", "kind", "state")),
        list(GpuQuota.objects.order_by("pk").values_list("pk", "limit")),
        AuditEvent.objects.count(),
    )


def post(client, url: str, body: dict | None = None):
    return client.post(url, body or {}, content_type="application/json")


def body_for(world, **overrides) -> dict:
    return {
        "team": "team-a",
        "name": "chat",
        "model": "llama-8b",
        "cluster": "ray-a",
        "gpus_per_replica": 2,
        "max_replicas": 2,
        "engine_args": {"enable_prefix_caching": True},
        **overrides,
    }


# --- reading --------------------------------------------------------------------------------------------
def test_anonymous_gets_401(client_for, world):
    endpoint = make_endpoint(world)
    assert client_for(None).get(LIST).status_code == 401
    assert client_for(None).get(detail(endpoint)).status_code == 401


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("member_user", ["a-bot"]),
        ("lead_user", ["a-bot"]),
        ("other_lead", ["b-bot"]),
        ("finance_user", ["a-bot", "b-bot"]),
        ("admin_user", ["a-bot", "b-bot"]),
    ],
)
def test_list_is_scoped_by_role(request, client_for, world, team_b, role, expected):
    make_endpoint(world, name="a-bot")
    make_endpoint(world, team=team_b, name="b-bot")
    response = client_for(request.getfixturevalue(role)).get(LIST)
    assert [row["name"] for row in response.json()["results"]] == expected


def test_row_carries_spec_state_and_how_to_call_it(client_for, world, member_user):
    endpoint = make_endpoint(
        world, name="chat", gpus_per_replica=2, max_replicas=3, base_url="http://serve/team-a/chat/v1"
    )
    row = client_for(member_user).get(detail(endpoint)).json()
    assert row["team"] == "team-a" and row["model"] == "llama-8b" and row["cluster"] == "ray-a"
    assert row["gpu_type"] == "H100-80GB" and row["reserved_gpus"] == 6 and row["state"] == "ready"
    assert row["base_url"] == "http://serve/team-a/chat/v1"
    assert row["served_model_id"] == f"team-a-chat-{endpoint.pk}"
    assert row["approved_by"] is None and row["requested_by"] == endpoint.requested_by.username


def test_another_teams_endpoint_is_404(client_for, world, lead_user, team_b):
    theirs = make_endpoint(world, team=team_b)
    client = client_for(lead_user)
    assert client.get(detail(theirs)).status_code == 404
    assert client.get(detail(theirs, "operations")).status_code == 404
    before = state()
    assert client.patch(detail(theirs), {"max_replicas": 2}, content_type="application/json").status_code == 404
    assert client.delete(detail(theirs)).status_code == 404
    assert post(client, detail(theirs, "retry")).status_code == 404
    assert state() == before


def test_filters_and_finished_endpoints(client_for, world, finance_user, team_b):
    make_endpoint(world, name="a-ready")
    make_endpoint(world, name="a-gone", state=Endpoint.State.DELETED)
    make_endpoint(world, team=team_b, name="b-failed", state=Endpoint.State.FAILED)
    client = client_for(finance_user)

    def names(query: str) -> list[str]:
        return [row["name"] for row in client.get(LIST + query).json()["results"]]

    assert names("") == ["a-ready", "b-failed"]
    assert names("?state=deleted") == ["a-gone"]
    assert names("?team=team-b") == ["b-failed"]
    response = client.get(LIST + "?state=sleeping")
    assert response.status_code == 400 and "state" in response.json()


def query_count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_query_count_is_constant(client_for, world, finance_user, team_b):
    client = client_for(finance_user)
    for i in range(3):
        make_endpoint(world, team=team_b if i % 2 else None, model=CatalogModelFactory(), approved_by=UserFactory())
    few = query_count(client, LIST)
    for i in range(7):
        make_endpoint(world, team=team_b if i % 2 else None, cluster=ClusterFactory(), approved_by=UserFactory())
    assert query_count(client, LIST) == few <= 8
    assert client.get(LIST).json()["count"] == 10


def test_operations_are_listed_newest_first_with_constant_queries(client_for, world, member_user):
    endpoint = make_endpoint(world)
    client = client_for(member_user)
    url = detail(endpoint, "operations")
    for kind in ("apply", "update", "reconcile"):
        Operation.objects.create(cluster=world["cluster"], endpoint=endpoint, kind=kind, attempts=1, message=kind)
    few = query_count(client, url)
    for _ in range(7):
        Operation.objects.create(cluster=world["cluster"], endpoint=endpoint, kind="reconcile")
    assert query_count(client, url) == few
    body = client.get(url).json()
    assert body["count"] == 10
    assert body["results"][-1]["kind"] == "apply" and body["results"][-1]["cluster"] == "ray-a"
    assert set(body["results"][0]) == {
        "id", "kind", "state", "attempts", "message", "cluster", "created_at", "started_at", "finished_at"
    }  # fmt: skip


# --- requesting -----------------------------------------------------------------------------------------
def test_lead_requests_an_endpoint(client_for, world, lead_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client_for(lead_user), LIST, body_for(world))
    assert response.status_code == 201, response.json()
    body = response.json()
    endpoint = Endpoint.objects.get(pk=body["id"])
    assert body["state"] == "approved" and body["reserved_gpus"] == 4 and body["gpu_type"] == "H100-80GB"
    assert body["max_model_len"] == world["model"].context_length
    assert "fits the quota" in body["state_message"]
    assert endpoint.engine_args == {"enable_prefix_caching": True}
    assert Operation.objects.get(endpoint=endpoint).state == "pending"
    assert AuditEvent.objects.get(action="endpoint.request").actor == lead_user
    assert callbacks


def test_request_over_quota_waits(client_for, world, lead_user):
    body = post(client_for(lead_user), LIST, body_for(world, gpus_per_replica=8, max_replicas=3)).json()
    assert body["state"] == "pending_approval"
    assert "needs 24 H100-80GB; team has 16 free of 16" in body["state_message"]


BAD = {
    "bad name": ({"name": "Chat_Bot"}, "name"),
    "min over max": ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
    "unknown engine arg": ({"engine_args": {"trust_remote_code": True}}, "engine_args"),
    "engine args not an object": ({"engine_args": ["seed"]}, "engine_args"),
    "context too long": ({"max_model_len": 10**6}, "max_model_len"),
    "over cluster capacity": ({"gpus_per_replica": 8, "max_replicas": 5}, "max_replicas"),
    "unknown model": ({"model": "gpt-9"}, "model"),
    "not a number": ({"max_replicas": "lots"}, "max_replicas"),
    "missing name": ({"name": None}, "name"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_request_is_json_by_field_and_changes_nothing(client_for, world, lead_user, case):
    overrides, field = BAD[case]
    body = {k: v for k, v in body_for(world, **overrides).items() if v is not None}
    before = state()
    response = post(client_for(lead_user), LIST, body)
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert all(isinstance(message, str) for message in response.json()[field])
    assert state() == before


def test_blocked_model_is_refused_on_its_field(client_for, world, lead_user):
    CatalogModelFactory(name="banned", status=CatalogModel.Status.BLOCKED)
    before = state()
    response = post(client_for(lead_user), LIST, body_for(world, model="banned", gpu_type="H100-80GB"))
    assert response.status_code == 400
    assert response.json()["model"] == ["banned is blocked; choose an approved model."]
    assert state() == before


@pytest.mark.parametrize("role", ["member_user", "finance_user", "other_lead"])
def test_only_the_teams_lead_or_an_admin_requests(request, client_for, world, role):
    before = state()
    response = post(client_for(request.getfixturevalue(role)), LIST, body_for(world))
    assert response.status_code == 403
    assert state() == before


def test_admin_requests_for_any_team(client_for, world, admin_user):
    assert post(client_for(admin_user), LIST, body_for(world)).status_code == 201


# --- changing -------------------------------------------------------------------------------------------
def test_lead_scales_with_patch(client_for, world, lead_user, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(world, name="chat", gpus_per_replica=2, max_replicas=1)
    with django_capture_on_commit_callbacks():
        response = client_for(lead_user).patch(
            detail(endpoint),
            {"max_replicas": 3, "engine_args": {"max_num_seqs": 32}, "name": "renamed", "gpus_per_replica": 8},
            content_type="application/json",
        )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["state"], body["max_replicas"], body["reserved_gpus"], body["generation"]) == ("updating", 3, 6, 2)
    assert body["name"] == "chat" and body["gpus_per_replica"] == 2  # read-only on change
    assert Operation.objects.get(endpoint=endpoint).kind == "update"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_replicas": 9}, "max_replicas"),  # 18 > 16 free
        ({"min_replicas": 2}, "min_replicas"),  # min > max (1)
        ({"engine_args": {"download_dir": "/"}}, "engine_args"),
    ],
)
def test_bad_change_is_json_by_field_and_changes_nothing(client_for, world, lead_user, change, field):
    endpoint = make_endpoint(world, gpus_per_replica=2, max_replicas=1)
    before = state()
    response = client_for(lead_user).patch(detail(endpoint), change, content_type="application/json")
    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert state() == before


def test_change_of_an_endpoint_in_transit_is_refused(client_for, world, lead_user):
    endpoint = make_endpoint(world, state=Endpoint.State.PROVISIONING)
    response = client_for(lead_user).patch(detail(endpoint), {"max_replicas": 2}, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Only a ready endpoint can be changed; this one is provisioning."]
    }  # fmt: skip


def test_put_is_not_offered(client_for, world, lead_user):
    endpoint = make_endpoint(world)
    assert client_for(lead_user).put(detail(endpoint), {}, content_type="application/json").status_code == 405


@pytest.mark.parametrize("role", ["member_user", "finance_user"])
def test_readers_cannot_change_delete_or_retry(request, client_for, world, role):
    endpoint = make_endpoint(world)
    failed = make_endpoint(world, state=Endpoint.State.FAILED)
    client = client_for(request.getfixturevalue(role))
    before = state()
    assert client.patch(detail(endpoint), {"max_replicas": 2}, content_type="application/json").status_code == 403
    assert client.delete(detail(endpoint)).status_code == 403
    assert post(client, detail(failed, "retry")).status_code == 403
    assert state() == before


def test_delete_answers_202_with_the_endpoint_deleting(
    client_for, world, lead_user, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(world)
    with django_capture_on_commit_callbacks():
        response = client_for(lead_user).delete(detail(endpoint))
    assert response.status_code == 202
    assert response.json()["state"] == "deleting"
    assert Operation.objects.get(endpoint=endpoint).kind == "delete"
    pending = make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    assert client_for(lead_user).delete(detail(pending)).json()["state"] == "deleted"


def test_retry_a_failed_endpoint(client_for, world, lead_user, django_capture_on_commit_callbacks):
    failed = make_endpoint(world, state=Endpoint.State.FAILED)
    with django_capture_on_commit_callbacks():
        response = post(client_for(lead_user), detail(failed, "retry"))
    assert response.status_code == 200 and response.json()["state"] == "approved"
    assert Operation.objects.get(endpoint=failed).kind == "apply"
    ready = make_endpoint(world)
    response = post(client_for(lead_user), detail(ready, "retry"))
    assert response.status_code == 400 and "non_field_errors" in response.json()


# --- approvals ------------------------------------------------------------------------------------------
def test_admin_approves_and_the_quota_is_raised_to_fit(
    client_for, world, admin_user, django_capture_on_commit_callbacks
):
    pending = make_endpoint(world, gpus_per_replica=8, max_replicas=3, state=Endpoint.State.PENDING_APPROVAL)
    with django_capture_on_commit_callbacks():
        response = post(client_for(admin_user), detail(pending, "approve"))
    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["approved_by"]) == ("approved", "admin")
    assert "quota raised from 16 to 24" in body["state_message"]
    assert GpuQuota.objects.get(team=world["team"], gpu_type=world["gpu"]).limit == 24
    assert Operation.objects.get(endpoint=pending).state == "pending"


def test_reject_needs_a_reason(client_for, world, admin_user):
    pending = make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    client = client_for(admin_user)
    before = state()
    response = post(client, detail(pending, "reject"), {"reason": " "})
    assert response.status_code == 400
    assert response.json() == {"reason": ["Say why, so the team knows what to change."]}
    assert state() == before
    response = post(client, detail(pending, "reject"), {"reason": "Too big for this quarter."})
    assert response.json()["state"] == "rejected"
    assert response.json()["state_message"] == "Too big for this quarter."


@pytest.mark.parametrize("role", ["member_user", "lead_user", "finance_user"])
def test_only_admins_approve_or_reject(request, client_for, world, role):
    pending = make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    client = client_for(request.getfixturevalue(role))
    before = state()
    assert post(client, detail(pending, "approve")).status_code == 403
    assert post(client, detail(pending, "reject"), {"reason": "no"}).status_code == 403
    assert state() == before


def test_approving_a_ready_endpoint_is_refused(client_for, world, admin_user):
    ready = make_endpoint(world)
    response = post(client_for(admin_user), detail(ready, "approve"))
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Only a waiting request can be approved; this one is ready."]}
