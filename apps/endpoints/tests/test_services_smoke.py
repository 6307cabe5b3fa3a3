from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints import services
from apps.endpoints.models import Endpoint, Operation
from apps.inventory.tests.factories import ClusterFactory, ClusterGpuInventoryFactory, GpuTypeFactory
from apps.teams.models import Team
from apps.teams.tests.factories import GpuQuotaFactory


@pytest.fixture
def setup(team_a, lead_user):
    gpu = GpuTypeFactory(sku="H100-80GB")
    cluster = ClusterFactory()
    ClusterGpuInventoryFactory(cluster=cluster, gpu_type=gpu, count=32)
    GpuQuotaFactory(team=team_a, gpu_type=gpu, limit=16)
    model = CatalogModelFactory(recommended_gpu_type=gpu)
    return {"team": team_a, "model": model, "cluster": cluster, "gpu": gpu, "actor": Actor(user=lead_user)}


def request(setup, name="chat", **kw):
    return services.endpoint_request(
        actor=setup["actor"], team=setup["team"], name=name, model=setup["model"], cluster=setup["cluster"], **kw
    )


def test_request_that_fits_is_approved_at_once_and_queues_an_apply(setup, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        endpoint = request(setup, gpus_per_replica=4, max_replicas=2)
    assert endpoint.state == Endpoint.State.APPROVED
    assert "8 free of 16" not in endpoint.state_message and "16 free of 16" in endpoint.state_message
    assert Operation.objects.filter(endpoint=endpoint, kind="apply", state="pending").count() == 1
    assert callbacks  # the apply is enqueued after commit


def test_request_over_quota_waits_for_approval_with_numbers(setup):
    request(setup, name="first", gpus_per_replica=4, max_replicas=3)
    endpoint = request(setup, name="second", gpus_per_replica=4, max_replicas=2)
    assert endpoint.state == Endpoint.State.PENDING_APPROVAL
    assert "needs 8 H100-80GB; team has 4 free of 16" in endpoint.state_message


def test_review_policy_waits_even_when_it_fits(setup):
    Team.objects.filter(pk=setup["team"].pk).update(approval_policy="review")
    setup["team"].refresh_from_db()
    assert request(setup).state == Endpoint.State.PENDING_APPROVAL


def test_request_beyond_cluster_capacity_is_refused(setup):
    with pytest.raises(ValidationError) as info:
        request(setup, gpus_per_replica=8, max_replicas=5)
    assert "max_replicas" in info.value.message_dict
    assert not Endpoint.objects.exists()


def test_unknown_engine_argument_is_refused(setup):
    with pytest.raises(ValidationError) as info:
        request(setup, engine_args={"trust_remote_code": True})
    assert "engine_args" in info.value.message_dict
    assert not Endpoint.objects.exists()
