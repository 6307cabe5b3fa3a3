"""endpoint_request: auto-approval, waiting with the numbers, refusals, and that bad input changes nothing."""

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
from apps.endpoints.tests.fakes import empty_queue, queued_tasks
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.models import Team
from apps.teams.tests.factories import GpuQuotaFactory


@pytest.fixture
def world(team_a, lead_user, admin_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory(name="east")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=32)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu, context_length=8192)
    return {"team": team_a, "model": model, "cluster": cluster, "gpu": gpu, "actor": Actor(user=lead_user)}


def ask(world, name="chat", **kw):
    kw.setdefault("model", world["model"])
    return services.endpoint_request(
        actor=world["actor"], team=world["team"], name=name, cluster=world["cluster"], **kw
    )


def everything():
    """What a refused request must leave exactly as it was."""
    return (
        list(Endpoint.objects.values_list("pk", "state", "max_replicas")),
        Operation.objects.count(),
        AuditEvent.objects.count(),
        len(mail.outbox),
    )


@pytest.fixture
def broker():
    with empty_queue():
        yield


def test_fitting_request_is_approved_audited_and_announced_after_commit(
    world, lead_user, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        endpoint = ask(world, gpus_per_replica=4, max_replicas=2)
    assert endpoint.state == Endpoint.State.APPROVED
    assert "needs 8 H100-80GB; team has 16 free of 16" in endpoint.state_message
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 8
    op = Operation.objects.get(endpoint=endpoint)
    assert (op.kind, op.state, op.cluster_id) == ("apply", "pending", world["cluster"].pk)
    event = AuditEvent.objects.get(action="endpoint.request", target_id=str(endpoint.pk))
    assert (event.actor_id, event.team_id, event.after["state"]) == (lead_user.pk, world["team"].pk, "approved")
    # After commit: the requester hears of the approval, and a worker is asked to apply this cluster.
    assert [m.to for m in mail.outbox] == [[lead_user.email]]
    assert "approved" in mail.outbox[0].subject.lower()
    assert [t.args for t in queued_tasks("endpoints.cluster_apply")] == [[world["cluster"].pk]]


def test_nothing_is_announced_before_commit(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ask(world)
    assert mail.outbox == []
    assert len(callbacks) == 2  # the apply and the e-mail, both waiting for the commit


def test_over_quota_request_waits_with_the_numbers_and_tells_admins(
    world, admin_user, django_capture_on_commit_callbacks
):
    ask(world, name="first", gpus_per_replica=4, max_replicas=3)
    with django_capture_on_commit_callbacks(execute=True):
        endpoint = ask(world, name="second", gpus_per_replica=4, max_replicas=2)
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL
    assert "needs 8 H100-80GB; team has 4 free of 16" in endpoint.state_message
    assert not Operation.objects.filter(endpoint=endpoint).exists()
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 12  # waiting holds nothing
    assert [m.to for m in mail.outbox] == [[admin_user.email]]
    assert "needs 8 H100-80GB; team has 4 free of 16" in mail.outbox[0].body
    assert AuditEvent.objects.get(action="endpoint.request", target_id=str(endpoint.pk)).after["state"] == (
        "pending_approval"
    )


def test_review_policy_waits_even_when_it_fits(world, admin_user, django_capture_on_commit_callbacks):
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    world["team"].refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        endpoint = ask(world)
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL
    assert "policy: review" in endpoint.state_message
    assert "team has 16 free of 16" in endpoint.state_message
    assert not Operation.objects.exists()
    assert [m.to for m in mail.outbox] == [[admin_user.email]]


def test_request_beyond_cluster_capacity_is_refused_and_changes_nothing(world):
    before = everything()
    with pytest.raises(ValidationError) as info:
        ask(world, gpus_per_replica=8, max_replicas=5)
    assert "Cluster east has 32 H100-80GB in all; this endpoint needs 40" in info.value.message_dict["max_replicas"][0]
    assert everything() == before


def test_gpu_type_the_cluster_lacks_is_refused(world):
    other = GpuTypeFactory(sku="A100-40GB")
    with pytest.raises(ValidationError) as info:
        ask(world, gpu_type=other)
    assert "has 0 A100-40GB" in info.value.message_dict["max_replicas"][0]


@pytest.mark.parametrize("status", [CatalogModel.Status.BLOCKED, CatalogModel.Status.DEPRECATED])
def test_blocked_or_deprecated_model_is_refused(world, status):
    CatalogModel.objects.filter(pk=world["model"].pk).update(status=status)
    world["model"].refresh_from_db()
    before = everything()
    with pytest.raises(ValidationError) as info:
        ask(world)
    assert info.value.message_dict["model"] == [f"llama-8b is {status}; choose an approved model."]
    assert everything() == before


@pytest.mark.parametrize(
    ("kw", "field", "text"),
    [
        ({"engine_args": {"trust_remote_code": True}}, "engine_args", "trust_remote_code is not an allowed"),
        ({"engine_args": {"max_num_seqs": "many"}}, "engine_args", "max_num_seqs must be a whole number."),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas", "Minimum replicas cannot exceed maximum"),
        ({"max_replicas": 0}, "max_replicas", "Give a whole number, 1 or more."),
        ({"gpus_per_replica": "two"}, "gpus_per_replica", "Give a whole number, 1 or more."),
        ({"max_model_len": 100_000}, "max_model_len", "llama-8b supports at most 8192 tokens of context."),
        ({"max_model_len": 8}, "max_model_len", "Give a whole number, 16 or more."),
        ({"name": "Chat_Bot"}, "name", "DNS-1123"),
        ({"name": ""}, "name", "cannot be blank"),
        ({"name": "x" * 41}, "name", "at most 40 characters"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(world, kw, field, text):
    ask(world, name="existing")
    before = everything()
    kw = {"name": "chat", **kw}
    with pytest.raises(ValidationError) as info:
        ask(world, **kw)
    assert text in " ".join(info.value.message_dict[field])
    assert everything() == before


def test_name_and_model_errors_are_reported_together(world):
    CatalogModel.objects.filter(pk=world["model"].pk).update(status=CatalogModel.Status.BLOCKED)
    world["model"].refresh_from_db()
    with pytest.raises(ValidationError) as info:
        ask(world, name="Bad Name")
    assert set(info.value.message_dict) == {"name", "model"}


def test_duplicate_live_name_is_a_field_error(world):
    ask(world, name="chat")
    before = everything()
    with pytest.raises(ValidationError) as info:
        ask(world, name="chat")
    assert info.value.message_dict["name"] == ["Team A already has an endpoint named chat."]
    assert everything() == before


def test_same_name_in_another_team_is_fine(world, team_b, other_lead):
    GpuQuotaFactory(team=team_b, gpu_type=world["gpu"], limit=4)
    ask(world, name="chat")
    theirs = services.endpoint_request(
        actor=Actor(user=other_lead), team=team_b, name="chat", model=world["model"], cluster=world["cluster"]
    )
    assert theirs.state == Endpoint.State.APPROVED


@pytest.mark.parametrize("finished", ["withdrawn", "rejected"])
def test_name_can_be_used_again_once_the_old_endpoint_is_finished(world, admin_user, finished):
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    world["team"].refresh_from_db()
    old = ask(world, name="chat")
    if finished == "withdrawn":
        services.endpoint_delete(actor=world["actor"], endpoint=old)
    else:
        services.endpoint_reject(actor=Actor(user=admin_user), endpoint=old, reason="Use the shared one.")
    new = ask(world, name="chat")
    assert new.pk != old.pk
    assert new.app_name != old.app_name and new.served_model_id != old.served_model_id
    assert Endpoint.objects.filter(team=world["team"], name="chat").count() == 2


def test_model_default_engine_args_are_merged_and_the_request_wins(world):
    CatalogModel.objects.filter(pk=world["model"].pk).update(
        default_engine_args={"dtype": "bfloat16", "max_num_seqs": 64}
    )
    world["model"].refresh_from_db()
    endpoint = ask(world, engine_args={"max_num_seqs": 128})
    assert endpoint.engine_args == {"dtype": "bfloat16", "max_num_seqs": 128}
    assert endpoint.max_model_len == 8192  # the model's context when none is asked for


def test_counts_given_as_text_are_accepted(world):
    endpoint = ask(world, gpus_per_replica="2", min_replicas="1", max_replicas="3", max_model_len="4096")
    assert (endpoint.gpus_per_replica, endpoint.max_replicas, endpoint.max_model_len) == (2, 3, 4096)
    assert endpoint.reserved_gpus == 6


def test_a_request_needs_a_person(world):
    with pytest.raises(ValidationError):
        services.endpoint_request(
            actor=Actor.system(), team=world["team"], name="x", model=world["model"], cluster=world["cluster"]
        )
    assert not Endpoint.objects.exists()


def test_no_quota_at_all_waits_with_zero_of_zero(world, team_b, other_lead):
    endpoint = services.endpoint_request(
        actor=Actor(user=other_lead), team=team_b, name="chat", model=world["model"], cluster=world["cluster"]
    )
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL
    assert "needs 1 H100-80GB; team has 0 free of 0" in endpoint.state_message
