"""Endpoint pages: who sees what, the request form and its estimate, the detail page's live status and actions,
approvals and the admins' queue. Cluster work is only ever queued here (captured on-commit callbacks are not run),
so these tests assert the pending Operation rather than anything on Ray."""

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
from apps.endpoints.context_processors import _pending_counts
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.endpoints.tests.factories import EndpointFactory, QuotaRequestFactory
from apps.inventory.tests.factories import (
    ClusterFactory,
    ClusterGpuInventoryFactory,
    GpuPriceFactory,
    GpuTypeFactory,
)
from apps.teams.models import GpuQuota, Team
from apps.teams.tests.factories import GpuQuotaFactory, TeamFactory

ROLES = ("member_user", "lead_user", "other_lead", "finance_user", "admin_user")


@pytest.fixture
def world(team_a, team_b, admin_user, finance_user, lead_user, member_user, other_lead):
    gpu = GpuTypeFactory(sku="H100-80GB")
    GpuPriceFactory(gpu_type=gpu, hourly_price=Decimal("2.5000"), is_example=True)
    cluster = ClusterFactory(name="ray-a", ray_serve_url="http://127.0.0.1:8000")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=32)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    GpuQuotaFactory(team=team_b, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu, recommended_gpu_count=1)
    return {"gpu": gpu, "cluster": cluster, "model": model, "team": team_a}


def make_endpoint(world, team: Team | None = None, **kw) -> Endpoint:
    kw.setdefault("requested_by", UserFactory())
    for name in ("model", "cluster"):
        kw.setdefault(name, world[name])
    kw.setdefault("gpu_type", world["gpu"])
    return EndpointFactory(team=team or world["team"], **kw)


def state() -> tuple:
    """Everything these pages can change, to prove that refused input changed nothing."""
    return (
        list(
            Endpoint.objects.order_by("pk").values_list(
                "pk", "state", "min_replicas", "max_replicas", "engine_args", "generation"
            )
        ),
        list(Operation.objects.order_by("pk").values_list("pk", "kind", "state")),
        list(GpuQuota.objects.order_by("pk").values_list("pk", "limit")),
        list(QuotaRequest.objects.order_by("pk").values_list("pk", "state")),
        AuditEvent.objects.count(),
    )


def field_errors(response, field: str) -> list[str]:
    """The errors the page shows next to `field` (checks the HTML too, not only the context)."""
    errors = list(response.context["form"].errors.get(field, []))
    if errors:
        assert f'id="id_{field}_error"' in response.content.decode()
    return errors


# --- who may open which page ------------------------------------------------------------------------
EXPECTED = {
    #               member lead  other-lead finance admin
    "list": (200, 200, 200, 200, 200),
    "request": (403, 200, 200, 403, 200),
    "estimate": (403, 200, 200, 403, 200),
    "queue": (403, 403, 403, 403, 200),
    "quota_requests": (200, 200, 200, 200, 200),
    "quota_request_new": (403, 200, 200, 403, 200),
    "detail": (200, 200, 404, 200, 200),
    "status": (200, 200, 404, 200, 200),
    "change": (403, 200, 404, 403, 200),
    "delete": (403, 200, 404, 403, 200),
    "try": (200, 200, 404, 403, 200),
    "reject": (403, 403, 403, 403, 200),
}


@pytest.mark.parametrize("page", list(EXPECTED))
def test_every_endpoint_page_status_by_role(request, client_for, world, page):
    endpoint = make_endpoint(world)
    args = [endpoint.pk] if page in ("detail", "status", "change", "delete", "try", "reject") else []
    url = reverse(f"endpoints:{page}", args=args)
    anonymous = client_for(None).get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(reverse("accounts:login") + "?next=")
    got = tuple(client_for(request.getfixturevalue(role)).get(url).status_code for role in ROLES)
    assert got == EXPECTED[page]


@pytest.mark.parametrize("page", ["change", "delete", "retry", "approve", "reject"])
def test_forbidden_posts_change_nothing(client_for, world, member_user, finance_user, other_lead, page):
    endpoint = make_endpoint(world, state=Endpoint.State.FAILED if page == "retry" else Endpoint.State.READY)
    url = reverse(f"endpoints:{page}", args=[endpoint.pk])
    before = state()
    for user in (member_user, finance_user, other_lead):
        response = client_for(user).post(url, {"max_replicas": "2", "min_replicas": "1", "reason": "no"})
        assert response.status_code in (403, 404)
    assert client_for(other_lead).post(url).status_code in (403, 404)
    assert state() == before


def test_another_teams_endpoint_is_404_like_a_missing_one(client_for, world, lead_user, team_b):
    theirs = make_endpoint(world, team=team_b, name="secret-bot")
    client = client_for(lead_user)
    assert client.get(reverse("endpoints:detail", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("endpoints:detail", args=[theirs.pk + 1000])).status_code == 404
    assert b"secret-bot" not in client.get(reverse("endpoints:list")).content


# --- list -----------------------------------------------------------------------------------------------
def test_list_shows_state_model_cluster_gpus_and_url_when_ready(client_for, world, member_user):
    make_endpoint(world, name="chat", gpus_per_replica=2, max_replicas=3, base_url="http://serve/team-a/chat/v1")
    make_endpoint(world, name="broken", state=Endpoint.State.FAILED, base_url="http://serve/team-a/broken/v1")
    html = client_for(member_user).get(reverse("endpoints:list")).content.decode()
    assert "chat" in html and "llama-8b" in html and "ray-a" in html
    assert "6 \N{MULTIPLICATION SIGN} H100-80GB" in html
    assert '<span class="badge ok">Ready</span>' in html
    assert '<span class="badge bad">Failed</span>' in html
    assert "http://serve/team-a/chat/v1" in html
    assert "http://serve/team-a/broken/v1" not in html  # a URL is only shown while it answers


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("member_user", {"a-bot"}),
        ("lead_user", {"a-bot"}),
        ("other_lead", {"b-bot"}),
        ("finance_user", {"a-bot", "b-bot"}),
        ("admin_user", {"a-bot", "b-bot"}),
    ],
)
def test_list_is_scoped_by_role(request, client_for, world, team_b, role, expected):
    make_endpoint(world, name="a-bot")
    make_endpoint(world, team=team_b, name="b-bot")
    response = client_for(request.getfixturevalue(role)).get(reverse("endpoints:list"))
    assert {e.name for e in response.context["endpoints"]} == expected


def test_list_filters_by_team_and_state_and_hides_finished_ones(client_for, world, finance_user, team_b):
    make_endpoint(world, name="a-ready")
    make_endpoint(world, name="a-failed", state=Endpoint.State.FAILED)
    make_endpoint(world, name="a-gone", state=Endpoint.State.DELETED)
    make_endpoint(world, team=team_b, name="b-ready")
    client = client_for(finance_user)

    def names(query: str) -> set[str]:
        return {e.name for e in client.get(reverse("endpoints:list") + query).context["endpoints"]}

    assert names("") == {"a-ready", "a-failed", "b-ready"}
    assert names("?team=team-b") == {"b-ready"}
    assert names("?state=failed") == {"a-failed"}
    assert names("?state=deleted") == {"a-gone"}
    assert names("?team=team-a&state=ready") == {"a-ready"}
    assert names("?state=nonsense") == {"a-ready", "a-failed", "b-ready"}  # a bad filter is ignored


def test_list_empty_states(client_for, world, lead_user, member_user):
    lead = client_for(lead_user).get(reverse("endpoints:list")).content.decode()
    assert "No endpoints yet — request one." in lead
    assert reverse("endpoints:request") in lead
    member = client_for(member_user).get(reverse("endpoints:list")).content.decode()
    assert "No endpoints yet." in member and reverse("endpoints:request") not in member
    nobody = client_for(UserFactory(username="newcomer")).get(reverse("endpoints:list")).content.decode()
    assert "You are not in any team yet" in nobody


def list_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_list_query_count_does_not_grow_with_rows(client_for, world, admin_user, team_b):
    client = client_for(admin_user)
    url = reverse("endpoints:list")
    for i in range(3):
        make_endpoint(world, team=team_b if i % 2 else world["team"], model=CatalogModelFactory())
    few = list_queries(client, url)
    for i in range(7):
        make_endpoint(world, team=team_b if i % 2 else world["team"], cluster=ClusterFactory())
    many = list_queries(client, url)
    assert few == many <= 10  # session, user, roles, teams (filter), count, rows, nav count, session save (3)
    assert len(client.get(url).context["endpoints"]) == 10


# --- request form ---------------------------------------------------------------------------------------
def request_data(world, **overrides) -> dict:
    data = {
        "team": world["team"].pk,
        "name": "chat",
        "model": world["model"].pk,
        "cluster": world["cluster"].pk,
        "gpu_type": "",
        "gpus_per_replica": "2",
        "min_replicas": "1",
        "max_replicas": "2",
        "max_model_len": "",
        "engine_args": '{"enable_prefix_caching": true}',
    }
    return {**data, **overrides}


def test_request_that_fits_is_approved_with_audit_and_a_pending_apply(
    client_for, world, lead_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = client_for(lead_user).post(reverse("endpoints:request"), request_data(world))
    endpoint = Endpoint.objects.get(name="chat")
    assert response.status_code == 302
    assert response["Location"] == reverse("endpoints:detail", args=[endpoint.pk])
    assert endpoint.state == Endpoint.State.APPROVED
    assert (endpoint.team, endpoint.gpu_type, endpoint.reserved_gpus) == (world["team"], world["gpu"], 4)
    assert endpoint.max_model_len == world["model"].context_length  # empty: the model's own
    assert endpoint.engine_args == {"enable_prefix_caching": True}
    assert endpoint.requested_by == lead_user
    event = AuditEvent.objects.get(action="endpoint.request")
    assert (event.actor, event.team_id, event.target_id) == (lead_user, world["team"].pk, str(endpoint.pk))
    operation = Operation.objects.get(endpoint=endpoint)
    assert (operation.kind, operation.state, operation.cluster) == ("apply", "pending", world["cluster"])
    assert callbacks  # the apply is enqueued after commit (not run here: nothing reaches Ray)


def test_request_over_quota_waits_with_the_numbers(client_for, world, lead_user):
    make_endpoint(world, name="big", gpus_per_replica=4, max_replicas=3)  # 12 of 16 reserved
    response = client_for(lead_user).post(
        reverse("endpoints:request"), request_data(world, gpus_per_replica="4"), follow=True
    )
    endpoint = Endpoint.objects.get(name="chat")
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL
    assert "needs 8 H100-80GB; team has 4 free of 16" in response.content.decode()
    assert not Operation.objects.filter(endpoint=endpoint).exists()


def test_empty_gpus_per_replica_takes_the_models_recommendation(client_for, world, lead_user):
    CatalogModel.objects.filter(pk=world["model"].pk).update(recommended_gpu_count=2)
    client_for(lead_user).post(reverse("endpoints:request"), request_data(world, gpus_per_replica="", max_replicas="1"))
    assert Endpoint.objects.get(name="chat").gpus_per_replica == 2


BAD_REQUESTS = {
    "bad name": ({"name": "Chat_Bot"}, "name"),
    "min over max": ({"min_replicas": "3", "max_replicas": "2"}, "min_replicas"),
    "unknown engine arg": ({"engine_args": '{"trust_remote_code": true}'}, "engine_args"),
    "engine args not JSON": ({"engine_args": "{nope"}, "engine_args"),
    "context too long": ({"max_model_len": "999999"}, "max_model_len"),
    "over cluster capacity": ({"gpus_per_replica": "8", "max_replicas": "5"}, "max_replicas"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_shows_the_error_next_to_the_field_and_changes_nothing(client_for, world, lead_user, case):
    overrides, field = BAD_REQUESTS[case]
    before = state()
    response = client_for(lead_user).post(reverse("endpoints:request"), request_data(world, **overrides))
    assert response.status_code == 200
    assert field_errors(response, field), response.context["form"].errors
    assert state() == before


def test_blocked_model_cannot_be_chosen(client_for, world, lead_user):
    blocked = CatalogModelFactory(name="banned-model", status=CatalogModel.Status.BLOCKED)
    client = client_for(lead_user)
    assert b"banned-model" not in client.get(reverse("endpoints:request")).content
    before = state()
    response = client.post(reverse("endpoints:request"), request_data(world, model=blocked.pk))
    assert "Choose an approved model" in field_errors(response, "model")[0]
    assert state() == before


def test_lead_cannot_request_for_another_team(client_for, world, other_lead):
    before = state()
    response = client_for(other_lead).post(reverse("endpoints:request"), request_data(world))
    assert field_errors(response, "team") == ["Choose one of the teams you lead."]
    assert state() == before


def test_duplicate_name_is_refused(client_for, world, lead_user):
    make_endpoint(world, name="chat")
    before = state()
    response = client_for(lead_user).post(reverse("endpoints:request"), request_data(world))
    assert "already has an endpoint" in field_errors(response, "name")[0]
    assert state() == before


def test_request_form_offers_only_own_teams_and_lists_engine_args(client_for, world, lead_user, team_b):
    response = client_for(lead_user).get(reverse("endpoints:request") + "?team=team-a")
    form = response.context["form"]
    assert list(form.fields["team"].queryset) == [world["team"]]
    assert form["team"].value() == world["team"].pk
    html = response.content.decode()
    assert "recommended: 1 x H100-80GB" in html
    assert "ray-a (32 x H100-80GB)" in html
    for key in ("enable_prefix_caching", "gpu_memory_utilization", "max_num_seqs"):
        assert key in html
    assert 'hx-get="' + reverse("endpoints:estimate") in html
    # The estimate is there before anything changes, for the preselected team.
    assert "Choose a model and a GPU type" in html


def test_a_lead_of_one_team_gets_it_preselected(client_for, world, lead_user, admin_user):
    assert client_for(lead_user).get(reverse("endpoints:request")).context["form"]["team"].value() == world["team"].pk
    assert client_for(admin_user).get(reverse("endpoints:request")).context["form"]["team"].value() is None


# --- estimate -------------------------------------------------------------------------------------------
def estimate(client, world, **overrides) -> str:
    data = request_data(world, **overrides)
    response = client.get(reverse("endpoints:estimate"), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "<html" not in html  # a fragment for htmx
    return " ".join(html.split())


def test_estimate_shows_reservation_quota_outcome_and_cost(client_for, world, lead_user):
    html = estimate(client_for(lead_user), world, gpus_per_replica="4", max_replicas="2")
    assert "8 \N{MULTIPLICATION SIGN} H100-80GB" in html
    assert "Needs 8 H100-80GB; team has 16 free of 16." in html
    assert "Cluster ray-a has 32 H100-80GB in all." in html
    assert "Approved at once" in html
    assert '20.00 USD <span class="muted">per hour' in html  # 8 GPUs x 2.50
    assert "14,600.00 USD per month" in html  # x 730 hours
    assert "example price" in html


def test_estimate_over_quota_says_it_waits_and_why(client_for, world, lead_user):
    make_endpoint(world, name="big", gpus_per_replica=4, max_replicas=3)
    html = estimate(client_for(lead_user), world, gpus_per_replica="4", max_replicas="2")
    assert "Needs 8 H100-80GB; team has 4 free of 16." in html
    assert "Waits for approval" in html
    assert "Over quota by 4" in html and "from 16 to 20" in html


def test_estimate_under_review_policy_waits_even_when_it_fits(client_for, world, lead_user):
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    html = estimate(client_for(lead_user), world, gpus_per_replica="1", max_replicas="1")
    assert "Waits for approval" in html and "an admin reviews every request" in html


def test_estimate_over_cluster_capacity_is_refused(client_for, world, lead_user):
    html = estimate(client_for(lead_user), world, gpus_per_replica="8", max_replicas="5")
    assert "Refused" in html and "has 32 H100-80GB in all; this endpoint needs 40" in html


def test_estimate_without_price_or_choices(client_for, world, lead_user):
    other_gpu = GpuTypeFactory(sku="L4")
    client = client_for(lead_user)
    html = estimate(client, world, gpu_type=other_gpu.pk)
    assert "No price for L4 yet" in html
    assert "Needs 4 L4; team has 0 free of 0." in html
    html = estimate(client, world, team="", model="")
    assert "Choose a team, a model and a GPU type to see" in html


def test_estimate_ignores_teams_the_person_does_not_lead(client_for, world, other_lead):
    html = estimate(client_for(other_lead), world)
    assert "Choose a team" in html and "16 free of 16" not in html


# --- detail and live status -----------------------------------------------------------------------------
def test_detail_of_a_ready_endpoint_shows_url_model_id_and_operations(client_for, world, member_user):
    endpoint = make_endpoint(world, name="chat", base_url="http://serve/team-a/chat/v1", engine_args={"seed": 7})
    Operation.objects.create(
        cluster=world["cluster"], endpoint=endpoint, kind="apply", state="succeeded", attempts=2, message="Running."
    )
    html = client_for(member_user).get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()
    assert "http://serve/team-a/chat/v1" in html
    assert endpoint.served_model_id in html
    assert "Succeeded" in html and "Running." in html and ">2<" in html
    assert "&quot;seed&quot;: 7" in html
    assert 'hx-trigger="every 2s"' not in html  # settled: no polling
    # A member reads and tries; nothing to change.
    assert reverse("endpoints:change", args=[endpoint.pk]) not in html
    assert reverse("endpoints:delete", args=[endpoint.pk]) not in html
    assert reverse("endpoints:try", args=[endpoint.pk]) in html


def test_detail_shows_each_role_its_actions(client_for, world, lead_user, finance_user, admin_user):
    ready = make_endpoint(world, name="ready-one")
    failed = make_endpoint(world, name="failed-one", state=Endpoint.State.FAILED)
    pending = make_endpoint(world, name="pending-one", state=Endpoint.State.PENDING_APPROVAL)

    def page(user, endpoint) -> str:
        return client_for(user).get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()

    lead = page(lead_user, ready)
    assert reverse("endpoints:change", args=[ready.pk]) in lead and reverse("endpoints:delete", args=[ready.pk]) in lead
    assert reverse("endpoints:retry", args=[failed.pk]) in page(lead_user, failed)
    assert reverse("endpoints:approve", args=[pending.pk]) not in page(lead_user, pending)
    assert "Withdraw" in page(lead_user, pending)
    finance = page(finance_user, ready)
    assert reverse("endpoints:change", args=[ready.pk]) not in finance
    assert reverse("endpoints:try", args=[ready.pk]) not in finance
    admin = page(admin_user, pending)
    assert reverse("endpoints:approve", args=[pending.pk]) in admin
    assert reverse("endpoints:reject", args=[pending.pk]) in admin


@pytest.mark.parametrize("in_transit", ["approved", "provisioning", "updating", "deleting"])
def test_status_polls_while_in_transit(client_for, world, member_user, in_transit):
    endpoint = make_endpoint(world, state=in_transit, state_message="Downloading weights.")
    client = client_for(member_user)
    status_url = reverse("endpoints:status", args=[endpoint.pk])
    page = client.get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()
    assert f'hx-get="{status_url}" hx-trigger="every 2s"' in page
    fragment = client.get(status_url, headers={"HX-Request": "true"})
    assert "HX-Refresh" not in fragment
    assert "Downloading weights." in fragment.content.decode() and "<html" not in fragment.content.decode()
    assert 'hx-trigger="every 2s"' in fragment.content.decode()


def test_status_stops_polling_and_reloads_once_settled(client_for, world, member_user):
    endpoint = make_endpoint(world, state=Endpoint.State.PROVISIONING)
    client = client_for(member_user)
    url = reverse("endpoints:status", args=[endpoint.pk])
    Endpoint.objects.filter(pk=endpoint.pk).update(state=Endpoint.State.READY, base_url="http://serve/x/v1")
    fragment = client.get(url, headers={"HX-Request": "true"})
    assert fragment["HX-Refresh"] == "true"
    html = fragment.content.decode()
    assert 'hx-trigger="every 2s"' not in html and "http://serve/x/v1" in html


# --- change, delete, retry ------------------------------------------------------------------------------
def test_lead_scales_a_ready_endpoint(client_for, world, lead_user, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(world, name="chat", gpus_per_replica=2, max_replicas=1)
    with django_capture_on_commit_callbacks():
        response = client_for(lead_user).post(
            reverse("endpoints:change", args=[endpoint.pk]),
            {"min_replicas": "1", "max_replicas": "3", "engine_args": '{"max_num_seqs": 64}'},
        )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.state, endpoint.max_replicas, endpoint.generation) == ("updating", 3, 2)
    assert endpoint.engine_args == {"max_num_seqs": 64}
    assert Operation.objects.get(endpoint=endpoint).kind == "update"
    event = AuditEvent.objects.get(action="endpoint.update")
    assert (event.before["max_replicas"], event.after["max_replicas"]) == (1, 3)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"min_replicas": "1", "max_replicas": "9", "engine_args": "{}"}, "max_replicas"),  # 18 > 16 free
        ({"min_replicas": "2", "max_replicas": "1", "engine_args": "{}"}, "min_replicas"),
        ({"min_replicas": "1", "max_replicas": "1", "engine_args": '{"download_dir": "/"}'}, "engine_args"),
        ({"min_replicas": "1", "max_replicas": "1", "engine_args": '{"gpu_memory_utilization": 2}'}, "engine_args"),
    ],
)
def test_bad_change_shows_field_error_and_changes_nothing(client_for, world, lead_user, data, field):
    endpoint = make_endpoint(world, gpus_per_replica=2, max_replicas=1)
    before = state()
    response = client_for(lead_user).post(reverse("endpoints:change", args=[endpoint.pk]), data)
    assert response.status_code == 200
    assert field_errors(response, field)
    assert state() == before


def test_change_of_an_endpoint_that_is_not_ready_is_refused(client_for, world, lead_user):
    endpoint = make_endpoint(world, state=Endpoint.State.PROVISIONING)
    client = client_for(lead_user)
    assert (
        "Only a ready endpoint can be changed"
        in client.get(reverse("endpoints:change", args=[endpoint.pk])).content.decode()
    )
    before = state()
    response = client.post(reverse("endpoints:change", args=[endpoint.pk]), {"min_replicas": "1", "max_replicas": "2"})
    assert response.context["form"].non_field_errors()
    assert state() == before


def test_delete_asks_first_then_removes_through_the_cluster(
    client_for, world, lead_user, django_capture_on_commit_callbacks
):
    endpoint = make_endpoint(world, name="chat", base_url="http://serve/team-a/chat/v1")
    client = client_for(lead_user)
    url = reverse("endpoints:delete", args=[endpoint.pk])
    confirm = client.get(url).content.decode()
    assert "Delete the endpoint team-a/chat?" in confirm and "http://serve/team-a/chat/v1" in confirm
    assert Endpoint.objects.get(pk=endpoint.pk).state == "ready"  # GET changes nothing
    with django_capture_on_commit_callbacks():
        assert client.post(url).status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.state == Endpoint.State.DELETING
    assert Operation.objects.get(endpoint=endpoint).kind == "delete"
    assert AuditEvent.objects.filter(action="endpoint.delete", target_id=str(endpoint.pk)).exists()


def test_deleting_a_waiting_request_withdraws_it(client_for, world, lead_user):
    endpoint = make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    client = client_for(lead_user)
    assert "Withdraw the request" in client.get(reverse("endpoints:delete", args=[endpoint.pk])).content.decode()
    client.post(reverse("endpoints:delete", args=[endpoint.pk]))
    endpoint.refresh_from_db()
    assert endpoint.state == Endpoint.State.DELETED
    assert not Operation.objects.exists()


def test_retry_a_failed_endpoint(client_for, world, lead_user, django_capture_on_commit_callbacks):
    endpoint = make_endpoint(world, state=Endpoint.State.FAILED)
    with django_capture_on_commit_callbacks():
        response = client_for(lead_user).post(reverse("endpoints:retry", args=[endpoint.pk]), follow=True)
    endpoint.refresh_from_db()
    assert endpoint.state == Endpoint.State.APPROVED
    assert Operation.objects.get(endpoint=endpoint).kind == "apply"
    assert "Trying team-a/" in response.content.decode()


def test_retry_of_a_ready_endpoint_says_why_and_changes_nothing(client_for, world, lead_user):
    endpoint = make_endpoint(world)
    before = state()
    response = client_for(lead_user).post(reverse("endpoints:retry", args=[endpoint.pk]), follow=True)
    assert "Only a failed endpoint can be retried" in response.content.decode()
    assert state() == before
    assert client_for(lead_user).get(reverse("endpoints:retry", args=[endpoint.pk])).status_code == 405


# --- approvals ------------------------------------------------------------------------------------------
def test_admin_approves_an_over_quota_request_and_the_quota_follows(
    client_for, world, admin_user, django_capture_on_commit_callbacks
):
    make_endpoint(world, name="big", gpus_per_replica=4, max_replicas=3)
    pending = make_endpoint(
        world, name="chat", gpus_per_replica=4, max_replicas=2, state=Endpoint.State.PENDING_APPROVAL
    )
    queue = reverse("endpoints:queue")
    with django_capture_on_commit_callbacks():
        response = client_for(admin_user).post(reverse("endpoints:approve", args=[pending.pk]), {"next": queue})
    assert response["Location"] == queue
    pending.refresh_from_db()
    assert (pending.state, pending.approved_by) == (Endpoint.State.APPROVED, admin_user)
    assert GpuQuota.objects.get(team=world["team"], gpu_type=world["gpu"]).limit == 20
    assert Operation.objects.get(endpoint=pending).state == "pending"
    assert {"endpoint.approve", "quota.update"} <= set(AuditEvent.objects.values_list("action", flat=True))


def test_approve_never_redirects_off_site(client_for, world, admin_user):
    pending = make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    response = client_for(admin_user).post(
        reverse("endpoints:approve", args=[pending.pk]), {"next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("endpoints:detail", args=[pending.pk])


def test_reject_needs_a_reason(client_for, world, admin_user):
    pending = make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    client = client_for(admin_user)
    url = reverse("endpoints:reject", args=[pending.pk])
    before = state()
    response = client.post(url, {"reason": "  "})
    assert response.status_code == 200
    assert field_errors(response, "reason") == ["Say why, so the team knows what to change."]
    assert state() == before
    response = client.post(url, {"reason": "Use the 8B model instead.", "next": reverse("endpoints:queue")})
    assert response["Location"] == reverse("endpoints:queue")
    pending.refresh_from_db()
    assert (pending.state, pending.state_message) == ("rejected", "Use the 8B model instead.")
    assert AuditEvent.objects.get(action="endpoint.reject").after["message"] == "Use the 8B model instead."


def test_approving_twice_says_why(client_for, world, admin_user):
    endpoint = make_endpoint(world)
    response = client_for(admin_user).post(reverse("endpoints:approve", args=[endpoint.pk]), follow=True)
    assert "Only a waiting request can be approved" in response.content.decode()


# --- the queue ------------------------------------------------------------------------------------------
def test_queue_lists_waiting_requests_with_quota_numbers(client_for, world, admin_user, team_b):
    make_endpoint(world, name="big", gpus_per_replica=4, max_replicas=3)
    make_endpoint(world, name="chat", gpus_per_replica=4, max_replicas=2, state=Endpoint.State.PENDING_APPROVAL)
    QuotaRequestFactory(team=team_b, gpu_type=world["gpu"], requested_limit=40, justification="Batch season")
    html = " ".join(client_for(admin_user).get(reverse("endpoints:queue")).content.decode().split())
    assert 'id="count-endpoints">1<' in html and 'id="count-quota">1<' in html
    assert "8 \N{MULTIPLICATION SIGN} H100-80GB" in html and "4 free of 16" in html
    assert "approving raises it to 20" in html
    assert "Batch season" in html and ">40<" in html
    assert "Approvals <span" in html  # the nav shows how many wait


def test_queue_empty_state(client_for, world, admin_user):
    html = client_for(admin_user).get(reverse("endpoints:queue")).content.decode()
    assert "No endpoint request is waiting." in html and "No quota request is waiting." in html


def test_queue_query_count_does_not_grow(client_for, world, admin_user, team_b):
    client = client_for(admin_user)
    url = reverse("endpoints:queue")

    def add(n: int) -> None:
        for _ in range(n):
            make_endpoint(world, team=team_b, state=Endpoint.State.PENDING_APPROVAL, gpu_type=GpuTypeFactory())
            QuotaRequestFactory(team=TeamFactory(), gpu_type=world["gpu"])

    add(3)
    few = list_queries(client, url)
    add(7)
    many = list_queries(client, url)
    assert few == many <= 11  # session, user, roles, both queues, quota numbers (2), nav count, session save (3)
    assert len(client.get(url).context["endpoint_rows"]) == 10


# --- navigation -----------------------------------------------------------------------------------------
def test_nav_links_by_role(client_for, world, admin_user, lead_user, finance_user):
    make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    QuotaRequestFactory(team=world["team"], gpu_type=world["gpu"])
    home = reverse("core:home")
    admin = " ".join(client_for(admin_user).get(home).content.decode().split())
    assert (
        'href="/endpoints/queue/">Approvals <span class="badge warn" title="Waiting for a decision">2</span>' in admin
    )
    for user in (lead_user, finance_user):
        html = client_for(user).get(home).content.decode()
        assert reverse("endpoints:list") in html and reverse("endpoints:queue") not in html
    nobody = client_for(UserFactory(username="nobody")).get(home).content.decode()
    assert reverse("endpoints:list") not in nobody


def test_pending_counts_for_the_nav_take_one_query(world, django_assert_num_queries):
    make_endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    make_endpoint(world, state=Endpoint.State.READY)
    QuotaRequestFactory(team=world["team"], gpu_type=world["gpu"])
    QuotaRequestFactory(team=world["team"], gpu_type=world["gpu"], state=QuotaRequest.State.DENIED)
    with django_assert_num_queries(1):
        counts = _pending_counts()
    assert counts == {"endpoints": 1, "quota_requests": 1, "total": 2}
