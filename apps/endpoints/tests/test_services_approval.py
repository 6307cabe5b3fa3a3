"""endpoint_approve / endpoint_reject and the quota requests: decisions, their audit trail and their e-mails."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints import services
from apps.endpoints.models import Endpoint, Operation, QuotaRequest
from apps.endpoints.selectors import quota_fit
from apps.endpoints.tests.fakes import empty_queue, queued_tasks
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.models import GpuQuota, Team
from apps.teams.tests.factories import GpuQuotaFactory


@pytest.fixture
def world(team_a, lead_user, admin_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory(name="east")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=64)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu)
    return {
        "team": team_a,
        "model": model,
        "cluster": cluster,
        "gpu": gpu,
        "lead": Actor(user=lead_user, source_ip="10.0.0.7"),
        "admin": Actor(user=admin_user, source_ip="10.0.0.1"),
    }


def ask(world, name="chat", **kw):
    return services.endpoint_request(
        actor=world["lead"], team=world["team"], name=name, model=world["model"], cluster=world["cluster"], **kw
    )


def limit_of(world):
    return GpuQuota.objects.get(team=world["team"], gpu_type=world["gpu"]).limit


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


# --- approve ---------------------------------------------------------------------------------------------------
def test_approving_a_fitting_request_queues_an_apply_and_tells_the_requester(
    world, lead_user, admin_user, django_capture_on_commit_callbacks
):
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    world["team"].refresh_from_db()
    waiting = ask(world, gpus_per_replica=2, max_replicas=2)
    with empty_queue():
        with django_capture_on_commit_callbacks(execute=True):
            endpoint = services.endpoint_approve(actor=world["admin"], endpoint=waiting)
        assert [t.args for t in queued_tasks("endpoints.cluster_apply")] == [[world["cluster"].pk]]
    assert (endpoint.state, endpoint.state_message, endpoint.approved_by) == ("approved", "Approved.", admin_user)
    assert limit_of(world) == 16
    assert Operation.objects.filter(endpoint=endpoint, kind="apply", state="pending").count() == 1
    (event,) = events("endpoint.approve")
    assert (event.actor_id, event.source_ip, event.before, event.after["state"]) == (
        admin_user.pk,
        "10.0.0.1",
        {"state": "pending_approval"},
        "approved",
    )
    assert [m.to for m in mail.outbox] == [[lead_user.email]]
    assert "approved" in mail.outbox[0].subject.lower()


def test_approving_over_quota_raises_the_quota_just_enough_and_audits_it(world):
    ask(world, name="big", gpus_per_replica=4, max_replicas=3)  # 12 of 16 reserved
    waiting = ask(world, name="more", gpus_per_replica=4, max_replicas=2)
    assert waiting.state == Endpoint.State.PENDING_APPROVAL
    endpoint = services.endpoint_approve(actor=world["admin"], endpoint=waiting)
    assert endpoint.state == Endpoint.State.APPROVED
    assert limit_of(world) == 20
    assert endpoint.state_message == "Approved; H100-80GB quota raised from 16 to 20 to fit it."
    (raised,) = events("quota.update")
    assert (raised.before, raised.after, raised.actor_id) == ({"limit": 16}, {"limit": 20}, world["admin"].user.pk)
    fit = quota_fit(team=world["team"], gpu_type=world["gpu"], needed=0)
    assert (fit.reserved, fit.limit) == (20, 20)


def test_approving_with_no_quota_creates_one(world, team_b, other_lead):
    waiting = services.endpoint_request(
        actor=Actor(user=other_lead), team=team_b, name="x", model=world["model"], cluster=world["cluster"]
    )
    services.endpoint_approve(actor=world["admin"], endpoint=waiting)
    assert GpuQuota.objects.get(team=team_b, gpu_type=world["gpu"]).limit == 1
    assert len(events("quota.create")) == 1


@pytest.mark.parametrize("state", ["approved", "ready", "rejected", "deleted", "failed"])
def test_only_a_waiting_request_can_be_approved(world, state):
    endpoint = ask(world)
    Endpoint.objects.filter(pk=endpoint.pk).update(state=state)
    before = (AuditEvent.objects.count(), Operation.objects.count(), limit_of(world))
    with pytest.raises(ValidationError) as info:
        services.endpoint_approve(actor=world["admin"], endpoint=endpoint)
    assert "Only a waiting request can be approved" in info.value.messages[0]
    assert (AuditEvent.objects.count(), Operation.objects.count(), limit_of(world)) == before


def test_a_model_blocked_since_the_request_cannot_be_approved(world):
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    world["team"].refresh_from_db()
    waiting = ask(world)
    CatalogModel.objects.filter(pk=world["model"].pk).update(status=CatalogModel.Status.BLOCKED)
    with pytest.raises(ValidationError) as info:
        services.endpoint_approve(actor=world["admin"], endpoint=waiting)
    assert "llama-8b is blocked now" in info.value.messages[0]
    waiting.refresh_from_db()
    assert waiting.state == Endpoint.State.PENDING_APPROVAL
    assert not Operation.objects.exists()


# --- reject ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["", "   ", None])
def test_rejecting_needs_a_reason(world, reason):
    waiting = ask(world, gpus_per_replica=32)
    before = AuditEvent.objects.count()
    with pytest.raises(ValidationError) as info:
        services.endpoint_reject(actor=world["admin"], endpoint=waiting, reason=reason)
    assert "reason" in info.value.message_dict
    waiting.refresh_from_db()
    assert waiting.state == Endpoint.State.PENDING_APPROVAL
    assert AuditEvent.objects.count() == before


def test_rejecting_tells_the_requester_why(world, lead_user, django_capture_on_commit_callbacks):
    waiting = ask(world, gpus_per_replica=32)
    with django_capture_on_commit_callbacks(execute=True):
        endpoint = services.endpoint_reject(actor=world["admin"], endpoint=waiting, reason="  Use the shared one. ")
    assert (endpoint.state, endpoint.state_message) == ("rejected", "Use the shared one.")
    (event,) = events("endpoint.reject")
    assert event.after["message"] == "Use the shared one."
    assert [m.to for m in mail.outbox] == [[lead_user.email]]
    assert "Use the shared one." in mail.outbox[0].body
    assert not Operation.objects.filter(endpoint=endpoint).exists()


def test_an_approved_endpoint_cannot_be_rejected(world):
    endpoint = ask(world)
    with pytest.raises(ValidationError):
        services.endpoint_reject(actor=world["admin"], endpoint=endpoint, reason="no")
    endpoint.refresh_from_db()
    assert endpoint.state == Endpoint.State.APPROVED


# --- quota requests --------------------------------------------------------------------------------------------
def test_quota_request_is_recorded_audited_and_sent_to_admins(
    world, lead_user, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        request = services.quota_request_create(
            actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit="24", justification=" RAG "
        )
    assert (request.state, request.requested_limit, request.justification) == ("pending", 24, "RAG")
    (event,) = events("quota_request.create")
    assert event.after == {"gpu_type": "H100-80GB", "current": 16, "requested_limit": 24}
    assert [m.to for m in mail.outbox] == [[admin_user.email]]
    assert "from 16 to 24" in mail.outbox[0].body
    assert limit_of(world) == 16  # asking changes no quota


def test_a_second_pending_request_for_the_same_type_is_refused(world):
    services.quota_request_create(
        actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=24, justification="RAG"
    )
    with pytest.raises(ValidationError) as info:
        services.quota_request_create(
            actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=32, justification="more"
        )
    assert info.value.message_dict["gpu_type"] == ["A request for H100-80GB is already waiting."]
    assert QuotaRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("limit", "justification", "fields"),
    [
        (16, "RAG", {"requested_limit"}),
        (8, "RAG", {"requested_limit"}),
        ("lots", "RAG", {"requested_limit"}),
        (-3, "RAG", {"requested_limit"}),
        (24, "  ", {"justification"}),
        (4, "", {"requested_limit", "justification"}),
        (200_000, "RAG", {"requested_limit"}),
    ],
)
def test_bad_quota_request_names_the_fields_and_changes_nothing(world, limit, justification, fields):
    before = (AuditEvent.objects.count(), len(mail.outbox))
    with pytest.raises(ValidationError) as info:
        services.quota_request_create(
            actor=world["lead"],
            team=world["team"],
            gpu_type=world["gpu"],
            requested_limit=limit,
            justification=justification,
        )
    assert set(info.value.message_dict) == fields
    assert not QuotaRequest.objects.exists()
    assert (AuditEvent.objects.count(), len(mail.outbox)) == before


def test_must_exceed_the_current_limit_message_has_the_number(world):
    with pytest.raises(ValidationError) as info:
        services.quota_request_create(
            actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=16, justification="x"
        )
    assert info.value.message_dict["requested_limit"] == ["The team already has 16 H100-80GB; ask for more."]


def test_approving_a_quota_request_sets_the_quota_and_tells_the_requester(
    world, lead_user, django_capture_on_commit_callbacks
):
    request = services.quota_request_create(
        actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=24, justification="RAG"
    )
    with django_capture_on_commit_callbacks(execute=True):
        request = services.quota_request_approve(actor=world["admin"], request=request)
    assert (request.state, request.decided_by, request.decided_at is not None) == (
        "approved",
        world["admin"].user,
        True,
    )
    assert limit_of(world) == 24
    assert [e.after for e in events("quota.update")] == [{"limit": 24}]
    assert events("quota_request.approved")[0].after == {"state": "approved", "reason": ""}
    assert [m.to for m in mail.outbox] == [[lead_user.email]]
    assert "approved" in mail.outbox[0].body
    # A decided request is decided: neither approved again nor denied.
    with pytest.raises(ValidationError):
        services.quota_request_approve(actor=world["admin"], request=request)
    with pytest.raises(ValidationError):
        services.quota_request_deny(actor=world["admin"], request=request, reason="late")


def test_approving_an_outdated_request_never_lowers_the_quota(world):
    request = services.quota_request_create(
        actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=20, justification="RAG"
    )
    # Meanwhile an endpoint approval raised the quota past what was asked for.
    ask(world, name="big", gpus_per_replica=8, max_replicas=2)
    services.endpoint_approve(
        actor=world["admin"], endpoint=ask(world, name="more", gpus_per_replica=8, max_replicas=1)
    )
    assert limit_of(world) == 24
    request = services.quota_request_approve(actor=world["admin"], request=request)
    assert request.state == QuotaRequest.State.APPROVED
    assert limit_of(world) == 24
    assert request.decision_reason == "The quota is already 24; left unchanged."


@pytest.mark.parametrize("reason", ["", "  ", None])
def test_denying_needs_a_reason(world, reason):
    request = services.quota_request_create(
        actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=24, justification="RAG"
    )
    with pytest.raises(ValidationError) as info:
        services.quota_request_deny(actor=world["admin"], request=request, reason=reason)
    assert "reason" in info.value.message_dict
    request.refresh_from_db()
    assert request.state == QuotaRequest.State.PENDING
    assert not events("quota_request.denied")


def test_denying_keeps_the_quota_and_tells_the_requester_why(world, lead_user, django_capture_on_commit_callbacks):
    request = services.quota_request_create(
        actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=24, justification="RAG"
    )
    with django_capture_on_commit_callbacks(execute=True):
        request = services.quota_request_deny(actor=world["admin"], request=request, reason="Budget is spent.")
    assert (request.state, request.decision_reason) == ("denied", "Budget is spent.")
    assert limit_of(world) == 16
    assert events("quota_request.denied")[0].after == {"state": "denied", "reason": "Budget is spent."}
    assert [m.to for m in mail.outbox] == [[lead_user.email]]
    assert "denied: Budget is spent." in mail.outbox[0].body
    # Denied, a new request for the type may be made.
    services.quota_request_create(
        actor=world["lead"], team=world["team"], gpu_type=world["gpu"], requested_limit=20, justification="less"
    )
