"""The lifecycle's decision table, with an in-memory runtime at the `runtime_for` seam (see fakes.py).

Endpoints get where they are through the real services (request, approve, update, delete), then `cluster_apply`
and `cluster_observe` run against what the fake runtime reports.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints import lifecycle, services
from apps.endpoints.models import Endpoint, Operation
from apps.endpoints.runtime.base import PermanentRuntimeError, Phase, TransientRuntimeError
from apps.endpoints.selectors import reserved_gpus
from apps.endpoints.tests.fakes import install_fake_runtime
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.tests.factories import GpuQuotaFactory


@pytest.fixture
def fake(monkeypatch):
    return install_fake_runtime(monkeypatch)


@pytest.fixture
def world(team_a, lead_user, admin_user, settings):
    settings.PARETO_DEPLOY_DEADLINE_SECONDS = 600
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
        "lead": Actor(user=lead_user),
        "admin": Actor(user=admin_user),
    }


def request(world, name="chat", **kw):
    kw.setdefault("gpus_per_replica", 2)
    return services.endpoint_request(
        actor=world["lead"], team=world["team"], name=name, model=world["model"], cluster=world["cluster"], **kw
    )


def apply(world):
    lifecycle.cluster_apply(cluster_id=world["cluster"].pk)


def observe(world):
    return lifecycle.cluster_observe(cluster_id=world["cluster"].pk)


def fresh(endpoint):
    return Endpoint.objects.get(pk=endpoint.pk)


def ops(endpoint):
    return list(Operation.objects.filter(endpoint=endpoint).order_by("id").values_list("kind", "state", "attempts"))


def ready(world, fake, name="chat", **kw):
    """An endpoint taken to ready through request, apply and a RUNNING report."""
    endpoint = request(world, name=name, **kw)
    apply(world)
    fake.report(endpoint, Phase.RUNNING, replicas=1)
    observe(world)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    return endpoint


def world_state():
    """Everything the lifecycle may write: two calls that change nothing leave this equal."""
    return (
        list(Endpoint.objects.order_by("pk").values()),
        list(Operation.objects.order_by("pk").values()),
        AuditEvent.objects.count(),
        len(mail.outbox),
    )


# --- apply -----------------------------------------------------------------------------------------------------
def test_apply_moves_approved_to_provisioning_with_a_deadline_and_a_running_operation(world, fake):
    endpoint = request(world)
    before = timezone.now()
    apply(world)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.PROVISIONING
    expected = before + dt.timedelta(seconds=600)
    assert expected - dt.timedelta(seconds=5) <= endpoint.deadline_at <= expected + dt.timedelta(seconds=5)
    op = Operation.objects.get(endpoint=endpoint)
    assert (op.kind, op.state, op.attempts, op.started_at is not None) == ("apply", "running", 1, True)
    assert fake.applies == [[endpoint.app_name]]
    event = AuditEvent.objects.get(action="endpoint.provisioning")
    assert (event.actor_id, event.actor_label, event.before) == (None, "system", {"state": "approved"})


def test_apply_sends_the_whole_desired_set_and_never_waiting_or_finished_endpoints(world, fake):
    first = ready(world, fake, name="first")
    second = request(world, name="second")
    waiting = request(world, name="huge", gpus_per_replica=16)
    assert waiting.state == Endpoint.State.PENDING_APPROVAL
    apply(world)
    assert fake.applies[-1] == sorted([first.app_name, second.app_name])


# --- observe: the way up ---------------------------------------------------------------------------------------
def test_running_current_becomes_ready_with_base_url_and_the_requester_hears(
    world, fake, lead_user, django_capture_on_commit_callbacks
):
    endpoint = request(world)
    apply(world)
    fake.report(endpoint, Phase.RUNNING, replicas=2)
    with django_capture_on_commit_callbacks(execute=True):
        result = observe(world)
    assert (result.in_transit, result.needs_apply, result.drift) == (False, False, ())
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.READY
    assert endpoint.base_url == "http://serve.test/team-a/chat/v1"
    assert (endpoint.observed_generation, endpoint.observed_replicas) == (endpoint.generation, 2)
    assert endpoint.ready_at is not None and endpoint.deadline_at is None
    assert ops(endpoint) == [("apply", "succeeded", 1)]
    ready_mails = [m for m in mail.outbox if "ready" in m.subject.lower()]
    assert [m.to for m in ready_mails] == [[lead_user.email]]
    assert "http://serve.test/team-a/chat/v1" in ready_mails[0].body
    assert endpoint.served_model_id in ready_mails[0].body


def test_deploying_within_the_deadline_stays_provisioning_and_shows_what_the_runtime_says(world, fake):
    endpoint = request(world)
    apply(world)
    fake.report(endpoint, Phase.DEPLOYING, message="Deploying app 'pareto-1'; 0/1 replicas running.")
    result = observe(world)
    assert (result.in_transit, result.needs_apply) == (True, False)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.PROVISIONING
    assert endpoint.state_message == "Deploying app 'pareto-1'; 0/1 replicas running."
    assert Operation.objects.get(endpoint=endpoint).message == endpoint.state_message


def test_deploying_past_the_deadline_fails_with_both_reasons_and_frees_the_gpus(
    world, fake, lead_user, admin_user, django_capture_on_commit_callbacks
):
    endpoint = request(world)
    apply(world)
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 2
    said = "Deployment 'LLMServer:x' in application 'pareto-1' has taken more than 30s to be scheduled."
    fake.report(endpoint, Phase.DEPLOYING, message=said)
    Endpoint.objects.filter(pk=endpoint.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        result = observe(world)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "Not running after 600 s (Pareto's deadline)" in endpoint.state_message
    assert said in endpoint.state_message
    assert endpoint.deadline_at is None
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 0
    op = Operation.objects.get(endpoint=endpoint)
    assert (op.state, op.message, op.finished_at is not None) == ("failed", endpoint.state_message, True)
    assert result.needs_apply  # what is left of it must be taken off the cluster
    (failed,) = [m for m in mail.outbox if "failed" in m.subject.lower()]
    assert sorted(failed.to) == sorted([lead_user.email, admin_user.email])


def test_missing_past_the_deadline_says_the_runtime_never_received_it(world, fake):
    endpoint = request(world)
    apply(world)
    fake.lose(endpoint)
    Endpoint.objects.filter(pk=endpoint.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    observe(world)
    assert "the runtime never received it" in fresh(endpoint).state_message


def test_runtime_failure_fails_the_endpoint_with_its_message_and_frees_the_gpus(world, fake):
    endpoint = request(world)
    apply(world)
    fake.report(endpoint, Phase.FAILED, message="ImportError: no module named 'vllm'")
    result = observe(world)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert endpoint.state_message == "The runtime could not start it: ImportError: no module named 'vllm'"
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 0
    assert ops(endpoint) == [("apply", "failed", 1)]
    assert result.needs_apply
    # The next apply leaves it out, and once it is gone nothing more is asked for.
    apply(world)
    assert fake.applies[-1] == []
    assert observe(world).needs_apply is False


# --- observe: updates ------------------------------------------------------------------------------------------
def test_old_spec_running_during_an_update_stays_updating_until_the_new_one_runs(world, fake):
    endpoint = ready(world, fake)
    mails = len(mail.outbox)
    services.endpoint_update(actor=world["lead"], endpoint=endpoint, max_replicas=3)
    # The worker has not applied yet: what runs is generation 1, RUNNING but not current.
    result = observe(world)
    assert fresh(endpoint).state == Endpoint.State.UPDATING
    assert (result.in_transit, result.needs_apply) == (True, True)  # the pending update asks for an apply
    apply(world)
    endpoint = fresh(endpoint)
    assert endpoint.deadline_at is not None
    assert ops(endpoint) == [("apply", "succeeded", 1), ("update", "running", 1)]
    fake.report(endpoint, Phase.DEPLOYING)
    assert observe(world).in_transit
    fake.report(endpoint, Phase.RUNNING, replicas=3)
    result = observe(world)
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.state_message) == ("ready", "Change rolled out.")
    assert (endpoint.observed_generation, endpoint.observed_replicas, endpoint.deadline_at) == (2, 3, None)
    assert ops(endpoint) == [("apply", "succeeded", 1), ("update", "succeeded", 1)]
    assert (result.in_transit, result.needs_apply) == (False, False)
    assert len(mail.outbox) == mails  # "ready" is announced once, not on every update


def test_update_that_never_rolls_out_fails_at_the_deadline(world, fake):
    endpoint = ready(world, fake)
    services.endpoint_update(actor=world["lead"], endpoint=endpoint, max_replicas=3)
    apply(world)
    fake.report(endpoint, Phase.UNHEALTHY, message="replica crashed")
    Endpoint.objects.filter(pk=endpoint.pk).update(deadline_at=timezone.now() - dt.timedelta(seconds=1))
    observe(world)
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert "Pareto's deadline" in endpoint.state_message and "replica crashed" in endpoint.state_message
    assert ops(endpoint)[-1] == ("update", "failed", 1)


# --- observe: a ready endpoint ---------------------------------------------------------------------------------
def test_ready_endpoint_missing_on_the_cluster_is_drift_that_asks_for_an_apply(world, fake):
    endpoint = ready(world, fake)
    fake.lose(endpoint)
    result = observe(world)
    assert result.needs_apply and not result.in_transit
    assert result.drift == (f"{endpoint.app_name} (team-a/chat) is missing",)
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.state_message) == ("ready", "Missing on the cluster; restoring it.")
    apply(world)
    assert endpoint.app_name in fake.deployed
    fake.report(endpoint, Phase.RUNNING, replicas=1)
    assert observe(world).needs_apply is False
    assert fresh(endpoint).state_message == "Ready."


def test_ready_endpoint_reports_unhealthy_and_replica_counts_without_changing_state(world, fake):
    endpoint = ready(world, fake, max_replicas=4)
    fake.report(endpoint, Phase.UNHEALTHY, message="1 replica failed its health check", replicas=2)
    observe(world)
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.state_message, endpoint.observed_replicas) == (
        "ready",
        "Unhealthy: 1 replica failed its health check",
        2,
    )
    fake.report(endpoint, Phase.RUNNING, replicas=4)
    observe(world)
    endpoint = fresh(endpoint)
    assert (endpoint.state_message, endpoint.observed_replicas) == ("Ready.", 4)


def test_ready_endpoint_that_the_runtime_reports_failed_is_failed(world, fake):
    endpoint = ready(world, fake)
    fake.report(endpoint, Phase.FAILED, message="node lost")
    assert observe(world).needs_apply
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.state_message) == ("failed", "The runtime reports it failed: node lost")


# --- observe: deletion -----------------------------------------------------------------------------------------
def test_deleting_keeps_the_gpus_until_the_runtime_no_longer_has_it(world, fake):
    fake.slow_delete = True
    endpoint = ready(world, fake)
    services.endpoint_delete(actor=world["lead"], endpoint=endpoint)
    result = observe(world)  # not applied yet: still RUNNING there
    assert (result.in_transit, result.needs_apply) == (True, True)
    apply(world)
    assert ops(endpoint)[-1] == ("delete", "running", 1)
    result = observe(world)  # the runtime is removing it
    assert (result.in_transit, result.needs_apply) == (True, False)
    assert fresh(endpoint).state == Endpoint.State.DELETING
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 2
    fake.settle()
    result = observe(world)
    endpoint = fresh(endpoint)
    assert (endpoint.state, endpoint.base_url, endpoint.observed_replicas) == ("deleted", "", 0)
    assert endpoint.deleted_at is not None
    assert ops(endpoint)[-1] == ("delete", "succeeded", 1)
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 0
    assert (result.in_transit, result.needs_apply) == (False, False)
    assert AuditEvent.objects.filter(action="endpoint.deleted", target_id=str(endpoint.pk)).count() == 1


def test_deleted_before_any_apply_ends_without_looping(world, fake):
    endpoint = request(world)  # approved, its apply still pending
    services.endpoint_delete(actor=world["lead"], endpoint=endpoint)
    apply(world)
    result = observe(world)
    assert fresh(endpoint).state == Endpoint.State.DELETED
    assert (result.in_transit, result.needs_apply) == (False, False)
    assert not Operation.objects.filter(state__in=Operation.OPEN).exists()


def test_a_stale_pending_operation_is_closed_by_the_next_apply(world, fake):
    endpoint = ready(world, fake)
    # An intent whose endpoint moved on (written by an older version, or a crash between two writes).
    Operation.objects.create(cluster=world["cluster"], endpoint=endpoint, kind=Operation.Kind.UPDATE)
    assert observe(world).needs_apply
    apply(world)
    stale = Operation.objects.get(endpoint=endpoint, kind="update")
    assert (stale.state, stale.message) == ("failed", "Superseded: the endpoint changed before this was carried out.")
    assert observe(world).needs_apply is False


# --- observe: orphans and pending intents ----------------------------------------------------------------------
def test_an_orphan_application_asks_for_an_apply_that_removes_it(world, fake):
    endpoint = ready(world, fake)
    fake.plant("pareto-99999")
    result = observe(world)
    assert result.needs_apply
    assert result.drift == ("pareto-99999 is Pareto's but no endpoint wants it",)
    apply(world)
    assert set(fake.deployed) == {endpoint.app_name}
    assert observe(world).needs_apply is False


def test_a_pending_operation_asks_for_an_apply(world, fake):
    request(world)  # its apply was enqueued, but say the message was lost
    result = observe(world)
    assert (result.in_transit, result.needs_apply, result.drift) == (True, True, ())


# --- errors from the runtime -----------------------------------------------------------------------------------
def test_transient_apply_error_counts_the_attempt_keeps_the_message_and_raises(world, fake):
    endpoint = request(world)
    fake.apply_errors.append(TransientRuntimeError("Ray dashboard answered 503: GCS down"))
    with pytest.raises(TransientRuntimeError):
        apply(world)
    op = Operation.objects.get(endpoint=endpoint)
    assert (op.state, op.attempts) == ("pending", 1)
    assert op.message == "Attempt 1 failed, will retry: Ray dashboard answered 503: GCS down"
    assert fresh(endpoint).state == Endpoint.State.APPROVED
    assert observe(world).needs_apply  # still an intent, even if every retry of the task is lost
    apply(world)
    op.refresh_from_db()
    assert (op.state, op.attempts, op.message) == ("running", 2, "Applied; waiting for the runtime to report.")
    assert fresh(endpoint).state == Endpoint.State.PROVISIONING


def test_permanent_apply_error_fails_the_endpoints_it_was_applying(
    world, fake, lead_user, django_capture_on_commit_callbacks
):
    running = ready(world, fake, name="running")
    endpoint = request(world)
    fake.apply_errors.append(PermanentRuntimeError("Ray refused the request (400): bad import path"))
    with django_capture_on_commit_callbacks(execute=True):
        apply(world)  # no exception: retrying cannot help
    endpoint = fresh(endpoint)
    assert endpoint.state == Endpoint.State.FAILED
    assert endpoint.state_message == (
        "The runtime refused the configuration: Ray refused the request (400): bad import path"
    )
    assert ops(endpoint) == [("apply", "failed", 1)]
    assert fresh(running).state == Endpoint.State.READY  # already running: left as it is
    assert any(lead_user.email in m.to and "failed" in m.subject.lower() for m in mail.outbox)


def test_transient_observe_error_reaches_the_caller_and_changes_nothing(world, fake):
    ready(world, fake)
    before = world_state()
    fake.observe_errors.append(TransientRuntimeError("timed out"))
    with pytest.raises(TransientRuntimeError):
        observe(world)
    assert world_state() == before


# --- idempotency -----------------------------------------------------------------------------------------------
def test_applying_twice_changes_nothing_the_second_time(world, fake):
    ready(world, fake, name="up")
    request(world, name="new")
    updated = ready(world, fake, name="changing")
    services.endpoint_update(actor=world["lead"], endpoint=updated, max_replicas=2)
    services.endpoint_delete(actor=world["lead"], endpoint=fresh(ready(world, fake, name="going")))
    apply(world)
    before = world_state()
    apply(world)
    assert world_state() == before
    assert fake.applies[-1] == fake.applies[-2]


@pytest.mark.parametrize("scenario", ["ready", "update rolled out", "failed", "deleted", "in transit", "drift"])
def test_observing_twice_changes_nothing_the_second_time(world, fake, scenario):
    endpoint = ready(world, fake)
    if scenario == "update rolled out":
        services.endpoint_update(actor=world["lead"], endpoint=endpoint, max_replicas=2)
        apply(world)
        fake.report(endpoint, Phase.RUNNING, replicas=2)
    elif scenario == "failed":
        fake.report(endpoint, Phase.FAILED, message="boom")
    elif scenario == "deleted":
        services.endpoint_delete(actor=world["lead"], endpoint=endpoint)
        apply(world)
    elif scenario == "in transit":
        request(world, name="other")
        apply(world)
    elif scenario == "drift":
        fake.lose(endpoint)
    first = observe(world)
    before = world_state()
    second = observe(world)
    assert world_state() == before
    assert second.in_transit == first.in_transit


def test_every_transition_on_the_way_is_audited_in_order(world, fake):
    endpoint = ready(world, fake)
    services.endpoint_update(actor=world["lead"], endpoint=endpoint, max_replicas=2)
    apply(world)
    fake.report(endpoint, Phase.RUNNING, replicas=2)
    observe(world)
    services.endpoint_delete(actor=world["lead"], endpoint=fresh(endpoint))
    apply(world)
    observe(world)
    trail = list(
        AuditEvent.objects.filter(target_type="endpoints.endpoint", target_id=str(endpoint.pk))
        .order_by("id")
        .values_list("action", "actor_label")
    )
    assert trail == [
        ("endpoint.request", "lead-a"),
        ("endpoint.provisioning", "system"),
        ("endpoint.ready", "system"),
        ("endpoint.update", "lead-a"),
        ("endpoint.ready", "system"),
        ("endpoint.delete", "lead-a"),
        ("endpoint.deleted", "system"),
    ]
