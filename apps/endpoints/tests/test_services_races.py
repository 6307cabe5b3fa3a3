"""Quota races on the real PostgreSQL: threads with their own connections hit one team's quota at once.

Each thread waits at a barrier so that the calls really overlap; the team row lock in the services must make
them queue up, so that no interleaving reserves more than the limit (or loses a quota raise).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints import services
from apps.endpoints.models import Endpoint, QuotaRequest
from apps.endpoints.selectors import reserved_gpus
from apps.endpoints.tests.factories import EndpointFactory
from apps.endpoints.tests.fakes import empty_queue, queued_tasks
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.models import GpuQuota, Team
from apps.teams.tests.factories import GpuQuotaFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]
THREADS = 8


def at_once(n: int, work: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run work(0..n-1) in n threads released together; each thread uses (and closes) its own DB connection."""
    barrier = threading.Barrier(n)
    results: list[tuple[str, Any]] = [("missing", None)] * n

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = ("ok", work(i))
        except ValidationError as exc:
            results[i] = ("refused", exc)
        except Exception as exc:  # anything else is a bug the assertions below must show
            results[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung (deadlock?)"
    errors = [r for r in results if r[0] in ("error", "missing")]
    assert not errors, errors
    return results


@pytest.fixture(autouse=True)
def slow_quota_reads(monkeypatch):
    """Widen the window between reading the free quota and writing the reservation, so that without the team
    lock the threads would reliably interleave there (the real query still runs)."""
    real = services.quota_fit

    def quota_fit_then_pause(**kwargs: Any):
        fit = real(**kwargs)
        time.sleep(0.05)
        return fit

    monkeypatch.setattr(services, "quota_fit", quota_fit_then_pause)


@pytest.fixture
def world(team_a, lead_user, admin_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory(name="east")
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=64)
    model = CatalogModelFactory(name="llama-8b", recommended_gpu_type=gpu)
    with empty_queue():
        yield {
            "team": team_a,
            "model": model,
            "cluster": cluster,
            "gpu": gpu,
            "user": lead_user,
            "lead": Actor(user=lead_user),
            "admin": Actor(user=admin_user),
        }


def limit(world) -> int:
    return GpuQuota.objects.get(team=world["team"], gpu_type=world["gpu"]).limit


def test_concurrent_requests_never_reserve_more_than_the_quota(world):
    GpuQuotaFactory(team=world["team"], gpu_type=world["gpu"], limit=8)

    def request(i: int) -> Endpoint:
        return services.endpoint_request(
            actor=world["lead"],
            team=world["team"],
            name=f"ep-{i}",
            model=world["model"],
            cluster=world["cluster"],
            gpus_per_replica=2,
        )

    results = at_once(THREADS, request)
    states = sorted(r[1].state for r in results)
    assert states == ["approved"] * 4 + ["pending_approval"] * 4
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 8
    # Those that waited say so with the numbers of the moment they were decided: nothing free.
    waiting = Endpoint.objects.filter(state=Endpoint.State.PENDING_APPROVAL)
    assert {e.state_message for e in waiting} == {
        "Over quota, waiting for an admin: needs 2 H100-80GB; team has 0 free of 8."
    }
    # Every committed approval enqueued exactly one apply, after commit, on the real broker.
    assert len(queued_tasks("endpoints.cluster_apply")) == 4
    assert AuditEvent.objects.filter(action="endpoint.request").count() == THREADS


def test_concurrent_approvals_raise_the_quota_without_losing_a_raise(world):
    GpuQuotaFactory(team=world["team"], gpu_type=world["gpu"], limit=4)
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    world["team"].refresh_from_db()
    waiting = [
        services.endpoint_request(
            actor=world["lead"],
            team=world["team"],
            name=f"ep-{i}",
            model=world["model"],
            cluster=world["cluster"],
            gpus_per_replica=2,
        )
        for i in range(6)
    ]
    assert {e.state for e in waiting} == {"pending_approval"}

    results = at_once(6, lambda i: services.endpoint_approve(actor=world["admin"], endpoint=waiting[i]))
    assert {r[1].state for r in results} == {"approved"}
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == 12
    assert limit(world) == 12  # two fitted the 4; four raised it by 2 each, none on a stale reading
    raises = [
        (e.before["limit"], e.after["limit"]) for e in AuditEvent.objects.filter(action="quota.update").order_by("id")
    ]
    assert raises == [(4, 6), (6, 8), (8, 10), (10, 12)]
    assert sorted(r[1].state_message == "Approved." for r in results) == [False] * 4 + [True] * 2


def test_concurrent_scale_ups_never_exceed_the_quota(world):
    GpuQuotaFactory(team=world["team"], gpu_type=world["gpu"], limit=THREADS + 2)
    ready = [
        EndpointFactory(
            team=world["team"],
            cluster=world["cluster"],
            gpu_type=world["gpu"],
            model=world["model"],
            requested_by=world["user"],
            name=f"ep-{i}",
        )
        for i in range(THREADS)
    ]
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == THREADS

    results = at_once(
        THREADS, lambda i: services.endpoint_update(actor=world["lead"], endpoint=ready[i], max_replicas=3)
    )
    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["ok"] + ["refused"] * (THREADS - 1)
    for kind, value in results:
        if kind == "refused":
            assert "Over quota: needs 3 H100-80GB; team has 1 free of 10" in value.message_dict["max_replicas"][0]
    assert reserved_gpus(team=world["team"], gpu_type=world["gpu"]) == THREADS + 2
    assert Endpoint.objects.filter(state=Endpoint.State.UPDATING).count() == 1


def test_concurrent_requests_for_one_name_create_one_endpoint(world):
    GpuQuotaFactory(team=world["team"], gpu_type=world["gpu"], limit=64)
    results = at_once(
        THREADS,
        lambda i: services.endpoint_request(
            actor=world["lead"], team=world["team"], name="chat", model=world["model"], cluster=world["cluster"]
        ),
    )
    assert sorted(r[0] for r in results) == ["ok"] + ["refused"] * (THREADS - 1)
    for kind, value in results:
        if kind == "refused":
            assert value.message_dict == {"name": ["Team A already has an endpoint named chat."]}
    assert Endpoint.objects.count() == 1


def test_concurrent_quota_requests_leave_one_pending(world):
    GpuQuotaFactory(team=world["team"], gpu_type=world["gpu"], limit=4)
    results = at_once(
        THREADS,
        lambda i: services.quota_request_create(
            actor=world["lead"],
            team=world["team"],
            gpu_type=world["gpu"],
            requested_limit=8 + i,
            justification="more traffic",
        ),
    )
    assert sorted(r[0] for r in results) == ["ok"] + ["refused"] * (THREADS - 1)
    assert QuotaRequest.objects.filter(state=QuotaRequest.State.PENDING).count() == 1
    assert len(mail.outbox) == 1  # one announcement, after the one commit


def test_approving_while_the_requester_withdraws_settles_on_one_outcome(world):
    GpuQuotaFactory(team=world["team"], gpu_type=world["gpu"], limit=4)
    Team.objects.filter(pk=world["team"].pk).update(approval_policy=Team.ApprovalPolicy.REVIEW)
    world["team"].refresh_from_db()
    for round_ in range(4):
        waiting = services.endpoint_request(
            actor=world["lead"], team=world["team"], name=f"ep-{round_}", model=world["model"], cluster=world["cluster"]
        )
        results = at_once(
            2,
            lambda i, e=waiting: (
                services.endpoint_approve(actor=world["admin"], endpoint=e)
                if i == 0
                else services.endpoint_delete(actor=world["lead"], endpoint=e)
            ),
        )
        waiting.refresh_from_db()
        # Either the approval came first (then the delete removes it from the cluster) or the withdrawal did
        # (then approving it is refused); never a deadlock or a half-done mix.
        if results[0][0] == "ok":
            assert waiting.state == Endpoint.State.DELETING
        else:
            assert results[0][1].messages == ["Only a waiting request can be approved; this one is deleted."]
            assert waiting.state == Endpoint.State.DELETED
