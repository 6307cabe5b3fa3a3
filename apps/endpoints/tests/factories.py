from __future__ import annotations

import factory

from apps.accounts.tests.factories import UserFactory
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.models import Endpoint, QuotaRequest
from apps.inventory.tests.factories import ClusterFactory, GpuTypeFactory
from apps.teams.tests.factories import TeamFactory


class EndpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Endpoint

    team = factory.SubFactory(TeamFactory)
    name = factory.Sequence(lambda n: f"ep-{n}")
    model = factory.SubFactory(CatalogModelFactory)
    cluster = factory.SubFactory(ClusterFactory)
    gpu_type = factory.SubFactory(GpuTypeFactory)
    gpus_per_replica = 1
    min_replicas = 1
    max_replicas = 1
    max_model_len = 4096
    requested_by = factory.SubFactory(UserFactory)
    state = Endpoint.State.READY


class QuotaRequestFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = QuotaRequest

    team = factory.SubFactory(TeamFactory)
    gpu_type = factory.SubFactory(GpuTypeFactory)
    requested_limit = 16
    justification = "More traffic"
    requested_by = factory.SubFactory(UserFactory)
