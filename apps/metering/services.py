"""Writes of the metering app that people trigger, each audited: statements (generate, regenerate, close), a team's
budget policy, and budget alerts (written by the periodic check, as the system).

Scraping, GPU-time accrual and rollups are machine work with no person behind them: `ingest`, `accrual` and
`rollup`, run by `tasks`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import Actor, audit_record
from apps.endpoints.models import Endpoint
from apps.teams.models import Budget, Membership, Team

from . import selectors
from .models import BudgetAlert, Statement, StatementLine
from .money import allocate, format_money
from .rollup import rollup

log = logging.getLogger(__name__)

# How far back a regeneration looks for closed statements that need an adjustment.
ADJUSTMENT_MONTHS = 12
_LOCK_STATEMENTS = 7303
FOUR_PLACES = Decimal("0.0001")
LineKey = tuple[int, Decimal | None]  # (endpoint id, rate)


def _hours(seconds: int) -> Decimal:
    return (Decimal(seconds) / 3600).quantize(FOUR_PLACES, rounding=ROUND_HALF_EVEN)


def _per_million(cost: Fraction, tokens: int) -> Decimal | None:
    if not tokens:
        return None
    value = cost * 1_000_000 / tokens
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(FOUR_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass
class GenerateReport:
    month: dt.date
    written: list[Statement] = field(default_factory=list)
    skipped_closed: list[Statement] = field(default_factory=list)


def _default_currency(team: Team) -> str:
    budget = getattr(team, "budget", None)
    return budget.currency if budget is not None else "USD"


def statements_generate(
    *, actor: Actor, month: dt.date, now: dt.datetime | None = None, team_ids: list[int] | None = None
) -> GenerateReport:
    """Make (or remake, while open) the month's statements: one per team and currency with metered usage, and one
    for every team with a budget. Closed statements are left exactly as they are; differences found for a closed
    month become adjustment lines on the statement being generated."""
    now = now or timezone.now()
    if not selectors.month_ended(month, now):
        raise ValidationError(
            {
                "month": f"{month:%B %Y} has not ended yet ({settings.PARETO_STATEMENT_TIME_ZONE}); statements are "
                "made after the month ends."
            }
        )
    rollup()  # every dirty hour and day first, so late minutes are in
    report = GenerateReport(month=month)
    lines = selectors.metered_lines(month, team_ids=team_ids)
    teams_qs = Team.objects.select_related("budget")
    if team_ids is not None:
        teams_qs = teams_qs.filter(pk__in=team_ids)
    teams = {t.pk: t for t in teams_qs}
    by_statement: dict[tuple[int, str], list[selectors.LineTotals]] = defaultdict(list)
    for line in lines:
        team = teams[line.team_id]
        by_statement[(line.team_id, line.currency or _default_currency(team))].append(line)
    for team in teams.values():
        if getattr(team, "budget", None) is not None:
            by_statement.setdefault((team.pk, team.budget.currency), [])
    endpoint_ids = {line.endpoint_id for line in lines}
    adjustments = _adjustments(month, teams, now=now)
    endpoint_ids |= {key[0] for per in adjustments.values() for (_, key, _) in per}
    endpoints = {
        e.pk: e
        for e in Endpoint.objects.filter(pk__in=endpoint_ids)
        .select_related("team", "gpu_type")
        .only("pk", "name", "team__slug", "team__name", "gpu_type__sku")
    }
    for key in adjustments:
        by_statement.setdefault(key, [])
    existing = {
        (s.team_id, s.currency): s
        for s in Statement.objects.filter(month=month, team_id__in=list(teams)).select_related("team")
    }
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_STATEMENTS, month.toordinal()])
        for (team_id, currency), team_lines in sorted(by_statement.items(), key=lambda item: item[0]):
            statement = existing.get((team_id, currency))
            if statement is not None and statement.is_closed:
                report.skipped_closed.append(statement)
                continue
            team = teams[team_id]
            written = _write_statement(
                actor=actor,
                statement=statement,
                team=team,
                month=month,
                currency=currency,
                lines=team_lines,
                adjustments=adjustments.get((team_id, currency), []),
                endpoints=endpoints,
                now=now,
            )
            report.written.append(written)
    return report


def _line_name(endpoint: Endpoint | None, endpoint_id: int) -> str:
    return f"{endpoint.team.slug}/{endpoint.name}" if endpoint is not None else f"endpoint {endpoint_id}"


def _write_statement(
    *,
    actor: Actor,
    statement: Statement | None,
    team: Team,
    month: dt.date,
    currency: str,
    lines: list[selectors.LineTotals],
    adjustments: list[tuple[dt.date, LineKey, Decimal]],
    endpoints: dict[int, Endpoint],
    now: dt.datetime,
) -> Statement:
    budget: Budget | None = getattr(team, "budget", None)
    fields = {
        "status": Statement.Status.OPEN,
        "time_zone": settings.PARETO_STATEMENT_TIME_ZONE,
        "cost_center": team.cost_center,
        "budget_amount": budget.monthly_amount if budget else None,
        "budget_currency": budget.currency if budget else "",
        "generated_at": now,
        "generated_by": actor.user,
    }
    before = None
    if statement is None:
        statement = Statement.objects.create(team=team, month=month, currency=currency, total=0, **fields)
        action = "statement.generate"
    else:
        before = {"total": str(statement.total), "lines": statement.lines.count()}
        statement.lines.all().delete()
        for name, value in fields.items():
            setattr(statement, name, value)
        action = "statement.regenerate"

    def sort_key(line: selectors.LineTotals) -> tuple[str, Decimal]:
        return (_line_name(endpoints.get(line.endpoint_id), line.endpoint_id), line.rate or Decimal(0))

    ordered = sorted(lines, key=sort_key)
    amounts = allocate({(line.endpoint_id, line.rate): line.cost for line in ordered}, currency)
    rows = []
    for position, line in enumerate(ordered):
        endpoint = endpoints.get(line.endpoint_id)
        cost = amounts[(line.endpoint_id, line.rate)]
        rows.append(
            StatementLine(
                statement=statement,
                position=position,
                kind=StatementLine.Kind.USAGE,
                endpoint_id=line.endpoint_id,
                endpoint_name=_line_name(endpoint, line.endpoint_id),
                gpu_type_sku=endpoint.gpu_type.sku if endpoint else "",
                gpu_seconds=line.gpu_seconds,
                gpu_hours=_hours(line.gpu_seconds),
                idle_gpu_hours=_hours(line.idle_gpu_seconds),
                rate=line.rate,
                cost=cost,
                prompt_tokens=line.prompt_tokens,
                generation_tokens=line.generation_tokens,
                requests=line.requests,
                cost_per_million_tokens=_per_million(line.cost, line.prompt_tokens + line.generation_tokens),
                note="" if line.rate is not None else "No GPU price in force: GPU time not billed.",
            )
        )
    for offset, (adjusts, (endpoint_id, rate), amount) in enumerate(adjustments):
        endpoint = endpoints.get(endpoint_id)
        rows.append(
            StatementLine(
                statement=statement,
                position=len(ordered) + offset,
                kind=StatementLine.Kind.ADJUSTMENT,
                endpoint_id=endpoint_id,
                endpoint_name=_line_name(endpoint, endpoint_id),
                gpu_type_sku=endpoint.gpu_type.sku if endpoint else "",
                rate=rate,
                cost=amount,
                adjusts_month=adjusts,
                note=f"Correction for {adjusts:%Y-%m} (closed): metered cost changed after closing.",
            )
        )
    StatementLine.objects.bulk_create(rows, batch_size=2000)
    statement.total = sum((row.cost for row in rows), Decimal(0))
    statement.save()
    audit_record(
        actor=actor,
        action=action,
        target=statement,
        team=team,
        before=before,
        after={"month": f"{month:%Y-%m}", "currency": currency, "total": str(statement.total), "lines": len(rows)},
    )
    return statement


def _adjustments(
    month: dt.date, teams: dict[int, Team], *, now: dt.datetime
) -> dict[tuple[int, str], list[tuple[dt.date, LineKey, Decimal]]]:
    """For each closed statement of the last ADJUSTMENT_MONTHS months before `month`: what its lines (plus
    adjustments already made on other statements) are short of the month's metered cost now, per line key."""
    earliest = month
    for _ in range(ADJUSTMENT_MONTHS):
        earliest = selectors.previous_month(earliest)
    closed = list(
        Statement.objects.filter(
            status=Statement.Status.CLOSED, month__lt=month, month__gte=earliest, team_id__in=list(teams)
        ).order_by("month", "team_id", "currency")
    )
    out: dict[tuple[int, str], list[tuple[dt.date, LineKey, Decimal]]] = defaultdict(list)
    if not closed:
        return out
    months = sorted({s.month for s in closed})
    billed: dict[tuple[int, str, dt.date], dict[LineKey, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    usage = StatementLine.objects.filter(statement__in=closed, kind=StatementLine.Kind.USAGE).values_list(
        "statement__team_id", "statement__currency", "statement__month", "endpoint_id", "rate", "cost"
    )
    for team_id, currency, billed_month, endpoint_id, rate, cost in usage:
        billed[(team_id, currency, billed_month)][(endpoint_id, rate)] += cost
    # Adjustments already made elsewhere (not on this month's statements, which are being rewritten).
    made = (
        StatementLine.objects.filter(
            kind=StatementLine.Kind.ADJUSTMENT, adjusts_month__in=months, statement__team_id__in=list(teams)
        )
        .exclude(statement__month=month)
        .values_list("statement__team_id", "statement__currency", "adjusts_month", "endpoint_id", "rate", "cost")
    )
    for team_id, currency, adjusted_month, endpoint_id, rate, cost in made:
        if adjusted_month is None:
            continue
        billed[(team_id, currency, adjusted_month)][(endpoint_id, rate)] += cost
    closed_keys = {(s.team_id, s.currency, s.month) for s in closed}
    for closed_month in months:
        metered: dict[tuple[int, str], dict[LineKey, Fraction]] = defaultdict(dict)
        for line in selectors.metered_lines(closed_month, team_ids=list(teams)):
            currency = line.currency or _default_currency(teams[line.team_id])
            metered[(line.team_id, currency)][(line.endpoint_id, line.rate)] = line.cost
        for team_id, currency, statement_month in sorted(closed_keys):
            if statement_month != closed_month:
                continue
            now_exact = metered.get((team_id, currency), {})
            already = billed.get((team_id, currency, closed_month), {})
            keys = sorted(set(now_exact) | set(already), key=lambda k: (k[0] or 0, k[1] or Decimal(0)))
            target = allocate({key: now_exact.get(key, Fraction(0)) for key in keys}, currency)
            for key in keys:
                difference = target[key] - already.get(key, Decimal(0))
                if difference:
                    out[(team_id, currency)].append((closed_month, key, difference))
    return out


def statement_close(*, actor: Actor, statement: Statement) -> Statement:
    """Close a statement for good (finance). From now on the database refuses any change to it or its lines."""
    with transaction.atomic():
        closed = Statement.objects.filter(pk=statement.pk, status=Statement.Status.OPEN).update(
            status=Statement.Status.CLOSED, closed_at=timezone.now(), closed_by=actor.user
        )
        if not closed:
            raise ValidationError("This statement is already closed.")
        statement = Statement.objects.select_related("team").get(pk=statement.pk)
        audit_record(
            actor=actor,
            action="statement.close",
            target=statement,
            team=statement.team,
            before={"status": Statement.Status.OPEN},
            after={"status": Statement.Status.CLOSED, "total": str(statement.total), "currency": statement.currency},
        )
    return statement


def team_budget_policy_set(*, actor: Actor, team: Team, block_requests_over_budget: bool) -> Team:
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        before = team.block_requests_over_budget
        if before == block_requests_over_budget:
            return team
        team.block_requests_over_budget = block_requests_over_budget
        team.save(update_fields=["block_requests_over_budget"])
        audit_record(
            actor=actor,
            action="team.budget_policy",
            target=team,
            team=team,
            before={"block_requests_over_budget": before},
            after={"block_requests_over_budget": block_requests_over_budget},
        )
    return team


# --- budget alerts ---------------------------------------------------------------------------------
def _alert_recipients(team: Team) -> list[str]:
    leads = Membership.objects.filter(team=team, role=Membership.Role.LEAD, user__is_active=True).values_list(
        "user__email", flat=True
    )
    finance = User.objects.filter(is_active=True, is_finance=True).values_list("email", flat=True)
    return sorted({address for address in [*leads, *finance] if address})


def _send_alert(alert: BudgetAlert, status: selectors.BudgetStatus) -> None:
    team = alert.team
    subject = f"[Pareto] {team.name} has used {alert.threshold}% of its {alert.month:%B %Y} budget"
    body = (
        f"{team.name} ({team.slug}, cost center {team.cost_center or '-'}) has spent {status.spent_display} of its "
        f"{status.amount_display} budget for {alert.month:%B %Y} ({status.percent or 0:.1f}%).\n"
        f"Month-end forecast at the current GPU reservations: {status.forecast_display}.\n"
    )
    if team.block_requests_over_budget:
        body += "The team's policy blocks new endpoint requests while it is over budget.\n"
    recipients = _alert_recipients(team)
    if not recipients:
        return

    def deliver() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # mail trouble must never undo the alert
            log.exception("could not send budget alert %s", alert.pk)

    transaction.on_commit(deliver)


def budget_alerts_check(*, now: dt.datetime | None = None) -> list[BudgetAlert]:
    """Raise each crossed threshold once per team and month: an in-app alert row, and an e-mail to the team's leads
    and finance. The unique constraint makes a second run (or a concurrent one) send nothing."""
    now = now or timezone.now()
    teams = list(Team.objects.filter(budget__isnull=False).select_related("budget"))
    statuses = selectors.budget_statuses(teams, now=now)
    made = []
    by_id = {t.pk: t for t in teams}
    for team_id, status in statuses.items():
        crossed = status.crossed
        if not crossed:
            continue
        known = set(BudgetAlert.objects.filter(team_id=team_id, month=status.month).values_list("threshold", flat=True))
        for threshold in crossed:
            if threshold in known:
                continue
            try:
                with transaction.atomic():
                    alert = BudgetAlert.objects.create(
                        team=by_id[team_id],
                        month=status.month,
                        threshold=threshold,
                        spent=_money4(status.spent),
                        budget=status.amount,
                        forecast=_money4(status.forecast),
                        currency=status.currency,
                    )
                    audit_record(
                        actor=Actor.system(),
                        action="budget.alert",
                        target=alert,
                        team=alert.team,
                        after={
                            "month": f"{status.month:%Y-%m}",
                            "threshold": threshold,
                            "spent": format_money(status.spent, status.currency),
                        },
                    )
                    _send_alert(alert, status)
            except IntegrityError:
                continue  # another run raised it first
            made.append(alert)
    return made


def _money4(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(FOUR_PLACES, rounding=ROUND_HALF_EVEN)
