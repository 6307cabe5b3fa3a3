"""Verify metering: each month's statement lines add up to the metered cost to the cent (adjustments included),
daily rollups equal hourly ones, and hourly rollups equal their minutes while those are kept. Exit 1 on a problem.

    manage.py metering_check                 # every month that has statements
    manage.py metering_check --month 2026-10 --month 2026-11
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.metering.checks import run_checks
from apps.metering.selectors import parse_month


class Command(BaseCommand):
    help = "Check that statements equal metered cost to the cent and that rollups equal what they summarise."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", action="append", help="YYYY-MM (repeatable); default: months with statements")
        parser.add_argument("--skip-minutes", action="store_true", help="Do not compare hours with minute rows.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            months = [parse_month(m) for m in options["month"]] if options["month"] else None
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        result = run_checks(months, minutes=not options["skip_minutes"])
        for warning in result.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        shown = ", ".join(f"{m:%Y-%m}" for m in result.months) or "none"
        summary = (
            f"months: {shown}; statements: {result.statements}; hours checked against minutes: {result.hours_checked}"
        )
        if not result.ok:
            for problem in result.problems:
                self.stderr.write(f"problem: {problem}")
            raise CommandError(f"metering check failed: {len(result.problems)} problem(s); {summary}")
        self.stdout.write(self.style.SUCCESS(f"metering check passed; {summary}"))
