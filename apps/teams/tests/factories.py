from __future__ import annotations

from decimal import Decimal

import factory

from apps.accounts.tests.factories import UserFactory
from apps.inventory.tests.factories import GpuTypeFactory
from apps.teams.models import Budget, GpuQuota, Membership, Team


class TeamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Team

    slug = factory.Sequence(lambda n: f"team-{n}")
    name = factory.LazyAttribute(lambda t: t.slug.replace("-", " ").title())
    cost_center = factory.Sequence(lambda n: f"CC-{1000 + n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    team = factory.SubFactory(TeamFactory)
    role = Membership.Role.MEMBER


class GpuQuotaFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GpuQuota

    team = factory.SubFactory(TeamFactory)
    gpu_type = factory.SubFactory(GpuTypeFactory)
    limit = 8


class BudgetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Budget

    team = factory.SubFactory(TeamFactory)
    monthly_amount = Decimal("10000.00")
    currency = "USD"
