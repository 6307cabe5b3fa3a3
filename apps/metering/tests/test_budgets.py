"""Budgets: alerts once per threshold per month (e-mail and in-app), the month-end forecast, and the team policy
that blocks new endpoint requests while over budget."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.audit.services import Actor
from apps.catalog.tests.factories import CatalogModelFactory
from apps.endpoints.models import Endpoint
from apps.endpoints.services import endpoint_request
from apps.inventory.tests.factories import ClusterGpuInventoryFactory
from apps.metering.accrual import accrue_minutes
from apps.metering.models import BudgetAlert
from apps.metering.rollup import rollup
from apps.metering.selectors import budget_block_reason, budget_status
from apps.metering.services import budget_alerts_check, team_budget_policy_set
from apps.teams.tests.factories import BudgetFactory, GpuQuotaFactory

from .factories import metered_endpoint

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 10, 15, 12, 0, tzinfo=dt.UTC)
CREATED = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


def spend(team, hours: int, *, gpus: int = 4, name: str = "chat") -> Endpoint:
    """`hours` hours of `gpus` GPUs at 2.50 each, on October 15 before NOW."""
    endpoint = metered_endpoint(team=team, name=name, gpus_per_replica=gpus, created_at=CREATED)
    start = NOW - dt.timedelta(hours=hours)
    accrue_minutes([start + dt.timedelta(minutes=i) for i in range(hours * 60)])
    rollup()
    return endpoint


def test_alerts_fire_once_per_threshold_per_month(
    team_a, lead_user, finance_user, member_user, django_capture_on_commit_callbacks
):
    BudgetFactory(team=team_a, monthly_amount=Decimal("100.00"), alert_thresholds=[50, 80, 100])
    spend(team_a, 9)  # 9 h x 4 GPUs x 2.50 = 90.00: 50% and 80% crossed
    with django_capture_on_commit_callbacks(execute=True):
        made = budget_alerts_check(now=NOW)
    assert sorted(a.threshold for a in made) == [50, 80]
    assert len(mail.outbox) == 2
    assert set(mail.outbox[0].to) == {lead_user.email, finance_user.email}  # leads and finance, not members
    assert "90.00 USD of its 100.00 USD" in mail.outbox[0].body
    with django_capture_on_commit_callbacks(execute=True):
        assert budget_alerts_check(now=NOW) == []
    assert len(mail.outbox) == 2
    alert = BudgetAlert.objects.get(threshold=80)
    assert (alert.spent, alert.month) == (Decimal("90.0000"), dt.date(2026, 10, 1))
    # Next month starts over.
    assert budget_status(team_a, now=dt.datetime(2026, 11, 2, tzinfo=dt.UTC)).spent == 0


def test_forecast_adds_the_current_reservations_until_month_end(team_a):
    BudgetFactory(team=team_a, monthly_amount=Decimal("1000.00"))
    spend(team_a, 2, gpus=2)  # 2 h x 2 GPUs x 2.50 = 10.00; still holding 2 GPUs = 5.00/h
    status = budget_status(team_a, now=NOW)
    assert status.spent == 10
    assert status.hourly_burn == 5
    hours_left = (dt.datetime(2026, 11, 1, tzinfo=dt.UTC) - NOW).total_seconds() / 3600  # 16.5 days
    assert status.forecast == Fraction(10) + 5 * Fraction(hours_left)
    assert status.percent == pytest.approx(1.0)
    assert status.crossed == []


def test_a_team_over_budget_with_the_policy_cannot_request_endpoints(team_a, lead_user):
    BudgetFactory(team=team_a, monthly_amount=Decimal("1.00"))
    # The policy looks at this month, now: two minutes just past of 64 GPUs at 2.50/h = 5.33.
    endpoint = metered_endpoint(team=team_a, gpus_per_replica=64, created_at=CREATED)
    this_minute = timezone.now().replace(second=0, microsecond=0)
    accrue_minutes([this_minute - dt.timedelta(minutes=2), this_minute - dt.timedelta(minutes=1)])
    rollup()
    GpuQuotaFactory(team=team_a, gpu_type=endpoint.gpu_type, limit=256)
    ClusterGpuInventoryFactory(cluster=endpoint.cluster, gpu_type=endpoint.gpu_type, count=256)
    model = CatalogModelFactory()

    def ask(name: str) -> Endpoint:
        return endpoint_request(
            actor=Actor(user=lead_user),
            team=team_a,
            name=name,
            model=model,
            cluster=endpoint.cluster,
            gpu_type=endpoint.gpu_type,
        )

    assert budget_block_reason(team=team_a) is None  # the policy is off by default
    assert ask("first").state == Endpoint.State.APPROVED
    team_budget_policy_set(actor=Actor(user=lead_user), team=team_a, block_requests_over_budget=True)
    team_a.refresh_from_db()
    before = Endpoint.objects.count()
    with pytest.raises(ValidationError) as caught:
        ask("second")
    assert "over budget" in caught.value.message_dict["team"][0]
    assert Endpoint.objects.count() == before
    # Back under budget (a bigger budget): requests go through again.
    team_a.budget.monthly_amount = Decimal("1000000.00")
    team_a.budget.save()
    assert ask("third").state == Endpoint.State.APPROVED


def test_policy_change_is_audited_and_idempotent(team_a, finance_user):
    from apps.audit.models import AuditEvent

    team_budget_policy_set(actor=Actor(user=finance_user), team=team_a, block_requests_over_budget=True)
    team_budget_policy_set(actor=Actor(user=finance_user), team=team_a, block_requests_over_budget=True)
    events = AuditEvent.objects.filter(action="team.budget_policy")
    assert events.count() == 1
    assert events.get().after == {"block_requests_over_budget": True}
