"""endpoint_update / endpoint_retry / endpoint_delete: what they reserve, what they queue, what they audit."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.catalog.models import CatalogModel
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints import services
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.selectors import reserved_gpus
from apps.endpoints.tests.factories import EndpointFactory
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.models import GpuQuota
from apps.teams.tests.factories import GpuQuotaFactory


@pytest.fixture
def world(team_a, lead_user, admin_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory(name="east")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=32)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu)
    return {
        "team": team_a,
        "model": model,
        "cluster": cluster,
        "gpu": gpu,
        "user": lead_user,
        "lead": Actor(user=lead_user),
        "admin": Actor(user=admin_user),
    }


def endpoint(world, state=Endpoint.State.READY, **kw):
    kw.setdefault("gpus_per_replica", 4)
    kw.setdefault("max_replicas", 2)
    return EndpointFactory(
        team=world["team"],
        cluster=world["cluster"],
        gpu_type=world["gpu"],
        model=world["model"],
        requested_by=world["user"],
        state=state,
        **kw,
    )


def reserved(world):
    return reserved_gpus(team=world["team"], gpu_type=world["gpu"])


def snapshot():
    return (
        list(Endpoint.objects.order_by("pk").values_list("state", "min_replicas", "max_replicas", "generation")),
        list(Endpoint.objects.order_by("pk").values_list("engine_args", flat=True)),
        Operation.objects.count(),
        AuditEvent.objects.count(),
    )


# --- update ----------------------------------------------------------------------------------------------------
def test_scaling_up_within_quota_rolls_out_and_audits(world):
    ready = endpoint(world)  # 8 of 16
    updated = services.endpoint_update(actor=world["lead"], endpoint=ready, min_replicas=2, max_replicas="4")
    assert (updated.state, updated.min_replicas, updated.max_replicas, updated.generation) == ("updating", 2, 4, 2)
    assert reserved(world) == 16
    assert Operation.objects.filter(endpoint=ready, kind="update", state="pending").count() == 1
    event = AuditEvent.objects.get(action="endpoint.update")
    assert event.before == {
        "gpus_per_replica": 4,
        "min_replicas": 1,
        "max_replicas": 2,
        "max_model_len": 4096,
        "engine_args": {},
        "state": "ready",
    }
    assert (event.after["min_replicas"], event.after["max_replicas"], event.after["state"]) == (2, 4, "updating")


def test_scaling_up_over_quota_is_refused_with_the_numbers(world):
    ready = endpoint(world)  # 8
    endpoint(world, name="other", gpus_per_replica=2, max_replicas=2)  # 4 more: 12 of 16
    before = snapshot()
    with pytest.raises(ValidationError) as info:
        services.endpoint_update(actor=world["lead"], endpoint=ready, max_replicas=4)
    # Its own 8 are not counted twice: it needs 16 in all, and 16 - 4 (the other endpoint) are free to it.
    assert info.value.message_dict["max_replicas"] == [
        "Over quota: needs 16 H100-80GB; team has 12 free of 16. Ask for more quota first."
    ]
    assert snapshot() == before


def test_scaling_up_to_exactly_the_free_quota_is_allowed(world):
    ready = endpoint(world)  # 8
    endpoint(world, name="other", gpus_per_replica=2, max_replicas=2)  # 12 of 16
    updated = services.endpoint_update(actor=world["lead"], endpoint=ready, max_replicas=3)  # 12 + 4 = 16
    assert updated.max_replicas == 3
    assert reserved(world) == 16


def test_over_quota_message_has_the_numbers(world):
    ready = endpoint(world)  # 8 of 16
    with pytest.raises(ValidationError) as info:
        services.endpoint_update(actor=world["lead"], endpoint=ready, max_replicas=5)  # needs 20
    assert info.value.message_dict["max_replicas"] == [
        "Over quota: needs 20 H100-80GB; team has 16 free of 16. Ask for more quota first."
    ]


def test_scaling_beyond_the_cluster_is_refused(world):
    ready = endpoint(world)
    GpuQuota.objects.filter(team=world["team"]).update(limit=100)
    with pytest.raises(ValidationError) as info:
        services.endpoint_update(actor=world["lead"], endpoint=ready, max_replicas=9)  # 36 > 32
    assert "Cluster east has 32 H100-80GB in all" in info.value.message_dict["max_replicas"][0]


def test_scaling_down_frees_gpus_at_once(world):
    ready = endpoint(world, max_replicas=4)  # 16
    services.endpoint_update(actor=world["lead"], endpoint=ready, max_replicas=1)
    assert reserved(world) == 4


def test_changing_engine_args_is_checked_against_the_allowlist(world):
    ready = endpoint(world)
    before = snapshot()
    with pytest.raises(ValidationError) as info:
        services.endpoint_update(actor=world["lead"], endpoint=ready, engine_args={"download_dir": "/etc"})
    assert "download_dir is not an allowed engine argument" in info.value.message_dict["engine_args"][0]
    assert snapshot() == before
    updated = services.endpoint_update(actor=world["lead"], endpoint=ready, engine_args={"enforce_eager": True})
    assert (updated.engine_args, updated.state) == ({"enforce_eager": True}, "updating")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"min_replicas": 3}, "min_replicas"),  # above the current max of 2
        ({"min_replicas": 2, "max_replicas": 1}, "min_replicas"),
        ({"max_replicas": 0}, "max_replicas"),
        ({"max_replicas": "2.5"}, "max_replicas"),
        ({"engine_args": ["enforce_eager"]}, "engine_args"),
    ],
)
def test_bad_update_names_the_field_and_changes_nothing(world, kw, field):
    ready = endpoint(world)
    before = snapshot()
    with pytest.raises(ValidationError) as info:
        services.endpoint_update(actor=world["lead"], endpoint=ready, **kw)
    assert field in info.value.message_dict
    assert snapshot() == before


def test_an_update_that_changes_nothing_writes_nothing(world):
    ready = endpoint(world, engine_args={"dtype": "auto"})
    before = snapshot()
    same = services.endpoint_update(
        actor=world["lead"], endpoint=ready, min_replicas="1", max_replicas=2, engine_args={"dtype": "auto"}
    )
    assert same.state == Endpoint.State.READY
    assert snapshot() == before


@pytest.mark.parametrize("state", ["approved", "provisioning", "updating", "failed", "deleting", "pending_approval"])
def test_only_a_ready_endpoint_can_be_changed(world, state):
    busy = endpoint(world, state=state)
    before = snapshot()
    with pytest.raises(ValidationError) as info:
        services.endpoint_update(actor=world["lead"], endpoint=busy, max_replicas=1)
    assert "Only a ready endpoint can be changed" in info.value.messages[0]
    assert snapshot() == before


# --- retry -----------------------------------------------------------------------------------------------------
def test_retrying_a_failed_endpoint_reserves_again_and_applies_anew(world):
    failed = endpoint(world, state=Endpoint.State.FAILED, generation=3)
    assert reserved(world) == 0
    retried = services.endpoint_retry(actor=world["lead"], endpoint=failed)
    assert (retried.state, retried.state_message, retried.generation) == ("approved", "Retrying.", 4)
    assert reserved(world) == 8
    assert Operation.objects.filter(endpoint=failed, kind="apply", state="pending").count() == 1
    event = AuditEvent.objects.get(action="endpoint.retry")
    assert (event.before, event.after["state"]) == ({"state": "failed"}, "approved")


def test_retry_over_quota_is_refused_with_the_numbers(world):
    failed = endpoint(world, state=Endpoint.State.FAILED)  # needs 8
    endpoint(world, name="taken", max_replicas=3)  # 12 of 16 taken meanwhile
    before = snapshot()
    with pytest.raises(ValidationError) as info:
        services.endpoint_retry(actor=world["lead"], endpoint=failed)
    assert info.value.messages == ["Over quota: needs 8 H100-80GB; team has 4 free of 16."]
    assert snapshot() == before


def test_only_a_failed_endpoint_can_be_retried(world):
    ready = endpoint(world)
    with pytest.raises(ValidationError):
        services.endpoint_retry(actor=world["lead"], endpoint=ready)


def test_a_failed_endpoint_of_a_blocked_model_cannot_be_retried(world):
    failed = endpoint(world, state=Endpoint.State.FAILED)
    CatalogModel.objects.filter(pk=world["model"].pk).update(status=CatalogModel.Status.BLOCKED)
    before = snapshot()
    with pytest.raises(ValidationError) as info:
        services.endpoint_retry(actor=world["lead"], endpoint=failed)
    assert "blocked" in info.value.messages[0]
    assert snapshot() == before


# --- delete ----------------------------------------------------------------------------------------------------
def test_withdrawing_a_waiting_request_deletes_it_at_once(world):
    waiting = endpoint(world, state=Endpoint.State.PENDING_APPROVAL)
    deleted = services.endpoint_delete(actor=world["lead"], endpoint=waiting)
    assert (deleted.state, deleted.deleted_at is not None) == ("deleted", True)
    assert not Operation.objects.exists()
    assert AuditEvent.objects.get(action="endpoint.withdraw").after["state"] == "deleted"


def test_deleting_a_ready_endpoint_keeps_its_gpus_until_the_runtime_confirms(world):
    ready = endpoint(world)
    deleting = services.endpoint_delete(actor=world["lead"], endpoint=ready)
    assert deleting.state == Endpoint.State.DELETING
    assert deleting.deleted_at is None
    assert reserved(world) == 8
    op = Operation.objects.get(endpoint=ready)
    assert (op.kind, op.state) == ("delete", "pending")
    assert AuditEvent.objects.get(action="endpoint.delete").before == {"state": "ready"}


def test_deleting_twice_is_harmless(world):
    ready = endpoint(world)
    services.endpoint_delete(actor=world["lead"], endpoint=ready)
    before = snapshot()
    again = services.endpoint_delete(actor=world["lead"], endpoint=ready)
    assert again.state == Endpoint.State.DELETING
    assert snapshot() == before


def test_deleting_cancels_an_apply_that_has_not_finished(world):
    approved = services.endpoint_request(
        actor=world["lead"], team=world["team"], name="chat", model=world["model"], cluster=world["cluster"]
    )
    assert Operation.objects.get(endpoint=approved).state == "pending"
    services.endpoint_delete(actor=world["lead"], endpoint=approved)
    ops = {op.kind: op for op in Operation.objects.filter(endpoint=approved)}
    assert (ops["apply"].state, ops["apply"].message) == ("failed", "Cancelled: the endpoint is being deleted.")
    assert ops["delete"].state == "pending"


def test_deleting_a_failed_endpoint_finishes_at_once_without_reserving_again(world):
    endpoint(world, name="other", max_replicas=4)  # 16 of 16: the failed one's GPUs went to this one
    failed = endpoint(world, state=Endpoint.State.FAILED)
    deleted = services.endpoint_delete(actor=world["lead"], endpoint=failed)
    assert deleted.state == Endpoint.State.DELETED
    assert reserved(world) == 16  # never 24 of 16
    assert not Operation.objects.filter(endpoint=failed).exists()
    assert AuditEvent.objects.get(action="endpoint.delete").after["state"] == "deleted"


def test_deleting_sends_no_mail(world, django_capture_on_commit_callbacks):
    ready = endpoint(world)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.endpoint_delete(actor=world["lead"], endpoint=ready)
    assert len(callbacks) == 1  # the apply only
    assert mail.outbox == []
