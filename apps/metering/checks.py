"""Consistency checks behind `manage.py metering_check`: statements against metered cost, and the rollups against
what they were made from. Each finding says what is wrong and by how much; an empty list means all is well."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from django.db.models import F, Sum

from . import selectors
from .models import DirtyHour, Statement, StatementLine, UsageDay, UsageHour, UsageMinute
from .money import exact_cost, format_money, round_money
from .rollup import HOUR


@dataclass
class CheckResult:
    months: list[dt.date] = field(default_factory=list)
    statements: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hours_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_statements(month: dt.date, result: CheckResult) -> None:
    """Per team and currency: usage lines of the month plus every adjustment for it == metered cost, to the cent."""
    metered = selectors.metered_cost_from_hours(month)
    billed: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    statements = list(Statement.objects.filter(month=month).select_related("team"))
    result.statements += len(statements)
    names = {s.team_id: s.team.slug for s in statements}
    for statement in statements:
        usage = statement.lines.filter(kind=StatementLine.Kind.USAGE).aggregate(total=Sum("cost"))["total"]
        billed[(statement.team_id, statement.currency)] += usage or Decimal(0)
        lines_total = statement.lines.aggregate(total=Sum("cost"))["total"] or Decimal(0)
        if lines_total != statement.total:
            result.problems.append(f"{statement}: total {statement.total} but its lines add up to {lines_total}")
    adjustments = (
        StatementLine.objects.filter(kind=StatementLine.Kind.ADJUSTMENT, adjusts_month=month)
        .values("statement__team_id", "statement__currency")
        .annotate(total=Sum("cost"))
        .order_by()
    )
    for row in adjustments:
        billed[(row["statement__team_id"], row["statement__currency"])] += row["total"]
    for key in sorted(set(metered) | set(billed)):
        team_id, currency = key
        if not currency:
            continue  # GPU time with no price in force: nothing to bill (statements note it)
        expected = round_money(metered.get(key, Fraction(0)), currency)
        got = billed.get(key, Decimal(0))
        if key not in billed and expected:
            result.problems.append(
                f"{month:%Y-%m} team {names.get(team_id, team_id)}: metered {format_money(expected, currency)} "
                "but there is no statement (generate the month's statements)"
            )
        elif got != expected:
            result.problems.append(
                f"{month:%Y-%m} team {names.get(team_id, team_id)} {currency}: statement lines add up to "
                f"{format_money(got, currency)}, metered cost is {format_money(expected, currency)} "
                f"(difference {got - expected}; regenerate, or the next month's statement adjusts a closed one)"
            )


def check_days_against_hours(month: dt.date, result: CheckResult) -> None:
    start, end = selectors.month_bounds(month)
    hours = dict(
        UsageHour.objects.filter(hour__gte=start, hour__lt=end)
        .values_list("team_id")
        .annotate(s=Sum("price_seconds"))
        .order_by()
    )
    days = dict(
        UsageDay.objects.filter(day__gte=month, day__lte=selectors.month_last_day(month))
        .values_list("team_id")
        .annotate(s=Sum("price_seconds"))
        .order_by()
    )
    for team_id in sorted(set(hours) | set(days)):
        if hours.get(team_id, 0) != days.get(team_id, 0):
            result.problems.append(
                f"{month:%Y-%m} team id {team_id}: daily rollups hold {exact_cost(days.get(team_id, 0))} "
                f"of cost, hourly rollups {exact_cost(hours.get(team_id, 0))} (run the rollup)"
            )


def check_hours_against_minutes(result: CheckResult, *, since: dt.datetime | None = None) -> None:
    """Hours whose minutes are all still kept: the hour rows must be exactly their minutes (cost and tokens)."""
    first_minute = UsageMinute.objects.order_by("minute").values_list("minute", flat=True).first()
    if first_minute is None:
        return
    # The first hour may have lost minutes to pruning: start at the next whole hour.
    start = first_minute.replace(minute=0, second=0, microsecond=0)
    if first_minute != start:
        start += HOUR
    if since is not None:
        start = max(start, since)
    dirty = set(DirtyHour.objects.values_list("hour", flat=True))
    minutes = (
        UsageMinute.objects.filter(minute__gte=start)
        .annotate(ps=F("rate") * F("gpu_seconds"))
        .values_list("minute", "endpoint_id", "ps", "prompt_tokens", "generation_tokens")
    )
    expected: dict[tuple[dt.datetime, int], list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])
    for minute, endpoint_id, price_seconds, prompt, generation in minutes.iterator(chunk_size=10000):
        hour = minute.replace(minute=0, second=0, microsecond=0)
        if hour in dirty:
            continue
        entry = expected[(hour, endpoint_id)]
        entry[0] += price_seconds or 0
        entry[1] += prompt + generation
    hours = (
        UsageHour.objects.filter(hour__gte=start)
        .values("hour", "endpoint_id")
        .annotate(ps=Sum("price_seconds"), p=Sum("prompt_tokens"), g=Sum("generation_tokens"))
        .order_by()
    )
    seen = set()
    for row in hours:
        key = (row["hour"], row["endpoint_id"])
        if row["hour"] in dirty:
            continue
        seen.add(key)
        want = expected.get(key, [Decimal(0), 0])
        if row["ps"] != want[0] or row["p"] + row["g"] != want[1]:
            result.problems.append(
                f"hour {row['hour']:%Y-%m-%d %H}h endpoint {row['endpoint_id']}: rollup has price-seconds "
                f"{row['ps']} and {row['p'] + row['g']} tokens, its minutes {want[0]} and {want[1]} (run the rollup)"
            )
    for key, (price_seconds, tokens) in expected.items():
        if key not in seen and (price_seconds or tokens):
            result.problems.append(f"hour {key[0]:%Y-%m-%d %H}h endpoint {key[1]}: minutes but no hourly rollup")
    result.hours_checked = len(seen)


def run_checks(months: list[dt.date] | None = None, *, minutes: bool = True) -> CheckResult:
    result = CheckResult()
    if months is None:
        months = sorted(set(Statement.objects.values_list("month", flat=True).distinct()))
    result.months = months
    for month in months:
        check_days_against_hours(month, result)
        check_statements(month, result)
    if minutes:
        check_hours_against_minutes(result)
    unpriced = UsageHour.objects.filter(rate=None, gpu_seconds__gt=0).count()
    if unpriced:
        result.warnings.append(f"{unpriced} hourly row(s) hold GPU time with no GPU price in force (not billed)")
    return result
