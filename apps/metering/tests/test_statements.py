"""Monthly chargeback statements: lines add up to metered cost to the cent, regenerate while open, never change once
closed, later corrections as adjustment lines, month boundaries in the statement time zone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import Actor
from apps.inventory.models import GpuPrice
from apps.metering.accrual import accrue_minutes
from apps.metering.checks import run_checks
from apps.metering.models import Statement, StatementLine
from apps.metering.money import round_money
from apps.metering.rollup import rollup
from apps.metering.selectors import metered_cost_from_hours
from apps.metering.services import statement_close, statements_generate
from apps.teams.tests.factories import BudgetFactory

from .factories import metered_endpoint

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system()
OCTOBER = dt.date(2026, 10, 1)
AFTER_OCTOBER = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
CREATED = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)


def minutes(first: dt.datetime, count: int) -> list[dt.datetime]:
    return [first + dt.timedelta(minutes=i) for i in range(count)]


def t(day: int, hour: int = 10, minute: int = 0, month: int = 10) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC)


def usage(team, *, sku="H100-80GB", price=Decimal("2.5000"), name="chat", gpus=1, **kwargs):
    return metered_endpoint(
        team=team, name=name, sku=sku, price=price, gpus_per_replica=gpus, created_at=CREATED, **kwargs
    )


def test_lines_add_up_to_the_metered_cost_to_the_cent(team_a):
    # Three endpoints of a third of a cent each: rounding line by line would bill 0.00 for 0.01 of GPU time.
    for i in range(3):
        usage(team_a, name=f"ep-{i}", sku=f"G{i}", price=Decimal("0.0100"))
    accrue_minutes(minutes(t(3), 20))
    report = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER)
    (statement,) = report.written
    lines = list(statement.lines.order_by("position"))
    assert len(lines) == 3
    exact = metered_cost_from_hours(OCTOBER)[(team_a.pk, "USD")]
    assert exact == Fraction(1, 100)  # 3 x 20 GPU-minutes at 0.01/h
    assert [line.cost for line in lines] == [Decimal("0.01"), Decimal("0.00"), Decimal("0.00")]
    assert statement.total == sum(line.cost for line in lines) == round_money(exact, "USD") == Decimal("0.01")
    assert run_checks([OCTOBER]).ok


def test_one_line_per_endpoint_and_rate_with_tokens_and_cost_per_million(team_a):
    endpoint = usage(team_a, gpus=2)
    GpuPrice.objects.create(gpu_type=endpoint.gpu_type, hourly_price=Decimal("3.0000"), effective_from=t(10, 12, 30))
    accrue_minutes(minutes(t(10, 12), 60))  # 30 minutes at 2.50, 30 at 3.00, 2 GPUs
    from apps.metering.models import UsageMinute

    UsageMinute.objects.filter(endpoint=endpoint, minute=t(10, 12, 5)).update(
        prompt_tokens=600_000, generation_tokens=400_000, requests=10
    )
    statement = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written[0]
    lines = {line.rate: line for line in statement.lines.all()}
    assert set(lines) == {Decimal("2.5000"), Decimal("3.0000")}
    old, new = lines[Decimal("2.5000")], lines[Decimal("3.0000")]
    assert (old.gpu_seconds, old.gpu_hours, old.cost) == (3600, Decimal("1.0000"), Decimal("2.50"))
    assert (new.gpu_hours, new.cost) == (Decimal("1.0000"), Decimal("3.00"))
    assert (old.prompt_tokens, old.generation_tokens, old.requests) == (600_000, 400_000, 10)
    assert old.cost_per_million_tokens == Decimal("2.5000")
    assert new.cost_per_million_tokens is None
    assert old.gpu_type_sku == "H100-80GB"
    assert old.endpoint_name == f"{team_a.slug}/chat"
    assert statement.total == Decimal("5.50")


def test_a_month_that_has_not_ended_is_refused(team_a):
    with pytest.raises(ValidationError) as caught:
        statements_generate(actor=SYSTEM, month=OCTOBER, now=t(31, 23, 59))
    assert "month" in caught.value.message_dict
    assert not Statement.objects.exists()


def test_regenerating_an_open_statement_rewrites_it(team_a):
    usage(team_a)
    accrue_minutes(minutes(t(5), 60))
    first = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written[0]
    assert first.total == Decimal("2.50")
    accrue_minutes(minutes(t(6), 60))  # late data for October
    second = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written[0]
    assert second.pk == first.pk
    assert second.total == Decimal("5.00")
    assert second.lines.count() == 1
    assert list(
        AuditEvent.objects.filter(action__startswith="statement.").order_by("id").values_list("action", flat=True)
    ) == [
        "statement.generate",
        "statement.regenerate",
    ]


def test_a_closed_statement_never_changes(team_a):
    usage(team_a)
    accrue_minutes(minutes(t(5), 60))
    statement = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written[0]
    statement_close(actor=SYSTEM, statement=statement)
    with pytest.raises(ValidationError):
        statement_close(actor=SYSTEM, statement=statement)
    accrue_minutes(minutes(t(6), 60))
    report = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER)
    assert report.written == [] and report.skipped_closed == [statement]
    statement.refresh_from_db()
    assert statement.total == Decimal("2.50")
    line = statement.lines.get()
    # Whatever the caller: the database refuses.
    for attempt in (
        lambda: Statement.objects.filter(pk=statement.pk).update(total=0),
        lambda: Statement.objects.filter(pk=statement.pk).delete(),
        lambda: StatementLine.objects.filter(pk=line.pk).update(cost=0),
        lambda: StatementLine.objects.filter(pk=line.pk).delete(),
        lambda: StatementLine.objects.create(statement=statement, endpoint_name="x", cost=1),
    ):
        with pytest.raises(DatabaseError, match="closed"), transaction.atomic():
            attempt()
    statement.refresh_from_db()
    assert (statement.total, statement.lines.get().cost) == (Decimal("2.50"), Decimal("2.5000"))


def test_a_later_correction_is_an_adjustment_line_on_the_next_statement(team_a):
    usage(team_a)
    accrue_minutes(minutes(t(5), 60))
    october = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written[0]
    statement_close(actor=SYSTEM, statement=october)
    accrue_minutes(minutes(t(6), 30))  # October minutes that arrived after closing: +1.25
    rollup()
    assert not run_checks([OCTOBER], minutes=False).ok  # the closed month is short until it is adjusted
    accrue_minutes(minutes(t(3, month=11), 60))
    november = statements_generate(
        actor=SYSTEM, month=dt.date(2026, 11, 1), now=dt.datetime(2026, 12, 1, 1, tzinfo=dt.UTC)
    ).written[0]
    kinds = {line.kind: line for line in november.lines.all()}
    assert kinds["usage"].cost == Decimal("2.50")
    adjustment = kinds["adjustment"]
    assert (adjustment.cost, adjustment.adjusts_month) == (Decimal("1.25"), OCTOBER)
    assert november.total == Decimal("3.75")
    result = run_checks([OCTOBER, dt.date(2026, 11, 1)])
    assert result.ok, result.problems
    # Regenerating November does not adjust twice.
    again = statements_generate(
        actor=SYSTEM, month=dt.date(2026, 11, 1), now=dt.datetime(2026, 12, 1, 1, tzinfo=dt.UTC)
    ).written[0]
    assert again.total == Decimal("3.75")
    assert run_checks([OCTOBER, dt.date(2026, 11, 1)]).ok


def test_months_follow_the_statement_time_zone(team_a, settings):
    settings.PARETO_STATEMENT_TIME_ZONE = "America/New_York"  # UTC-4 in October, UTC-5 in November
    usage(team_a)
    # 03:00-04:59 UTC on November 1 is still October 31 in New York.
    accrue_minutes(minutes(dt.datetime(2026, 11, 1, 3, tzinfo=dt.UTC), 120))
    report = statements_generate(actor=SYSTEM, month=OCTOBER, now=dt.datetime(2026, 11, 1, 5, tzinfo=dt.UTC))
    statement = report.written[0]
    assert statement.time_zone == "America/New_York"
    assert statement.total == Decimal("2.50")  # the hour 03:00-04:00 UTC; 04:00 UTC is November there
    assert run_checks([OCTOBER], minutes=False).ok


def test_currencies_get_their_own_statements_and_budget_variance_uses_its_own(team_a):
    BudgetFactory(team=team_a, monthly_amount=Decimal("100.00"), currency="USD")
    usage(team_a, name="us")
    usage(team_a, name="eu", sku="A100-EU", price=None)
    eu = usage(team_a, name="eu2", sku="A100-EU2", price=None)
    GpuPrice.objects.create(
        gpu_type=eu.gpu_type, hourly_price=Decimal("1.9000"), currency="EUR", effective_from=CREATED
    )
    accrue_minutes(minutes(t(5), 60))
    written = {s.currency: s for s in statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written}
    assert set(written) == {"USD", "EUR"}
    usd, eur = written["USD"], written["EUR"]
    assert usd.total == Decimal("2.50") and usd.variance == Decimal("97.50")
    assert eur.total == Decimal("1.90") and eur.variance is None
    # GPU time with no price in force is shown (not billed) on the budget-currency statement.
    unpriced = usd.lines.get(rate=None)
    assert unpriced.cost == 0 and unpriced.gpu_hours == Decimal("1.0000") and "No GPU price" in unpriced.note
    assert run_checks([OCTOBER], minutes=False).ok


def test_teams_with_a_budget_and_no_usage_get_an_empty_statement(team_a, team_b):
    BudgetFactory(team=team_b, monthly_amount=Decimal("10.00"), currency="EUR")
    usage(team_a)
    accrue_minutes(minutes(t(5), 60))
    written = statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER).written
    by_team = {s.team_id: s for s in written}
    assert by_team[team_b.pk].total == 0 and by_team[team_b.pk].currency == "EUR"
    assert by_team[team_b.pk].variance == Decimal("10.00")


def test_check_command_fails_on_a_mismatch_and_passes_when_fixed(team_a):
    usage(team_a)
    accrue_minutes(minutes(t(5), 60))
    statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER)
    call_command("metering_check", "--month", "2026-10")
    accrue_minutes(minutes(t(7), 60))
    rollup()
    with pytest.raises(CommandError, match="1 problem"):
        call_command("metering_check", "--month", "2026-10")
    statements_generate(actor=SYSTEM, month=OCTOBER, now=AFTER_OCTOBER)
    call_command("metering_check")
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("metering_check", "--month", "October")
